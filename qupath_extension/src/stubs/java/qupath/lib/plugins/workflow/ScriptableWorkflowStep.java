/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.plugins.workflow;

public interface ScriptableWorkflowStep extends WorkflowStep {
}
