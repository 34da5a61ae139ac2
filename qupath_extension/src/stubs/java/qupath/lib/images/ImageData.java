/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.images;

import qupath.lib.images.servers.ImageServer;
import qupath.lib.objects.hierarchy.PathObjectHierarchy;
import qupath.lib.plugins.workflow.Workflow;

public class ImageData<T> {
    private ImageData() {
    }

    public Workflow getHistoryWorkflow() {
        throw new UnsupportedOperationException("stub");
    }

    public ImageServer<T> getServer() {
        throw new UnsupportedOperationException("stub");
    }

    public PathObjectHierarchy getHierarchy() {
        throw new UnsupportedOperationException("stub");
    }
}
