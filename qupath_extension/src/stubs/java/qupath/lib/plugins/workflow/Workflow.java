/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.plugins.workflow;

public class Workflow {
    public synchronized void addStep(WorkflowStep step) {
        throw new UnsupportedOperationException("stub");
    }
}
