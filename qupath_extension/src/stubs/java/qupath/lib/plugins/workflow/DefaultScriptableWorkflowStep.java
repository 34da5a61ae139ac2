/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.plugins.workflow;

import java.util.Map;

public class DefaultScriptableWorkflowStep implements ScriptableWorkflowStep {
    private static final long serialVersionUID = 1L;

    public DefaultScriptableWorkflowStep(String name, Map<String, ?> parameterMap, String script) {
        throw new UnsupportedOperationException("stub");
    }
}
