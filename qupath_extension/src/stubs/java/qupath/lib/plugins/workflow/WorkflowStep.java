/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.plugins.workflow;

import java.io.Serializable;

public interface WorkflowStep extends Serializable {
}
