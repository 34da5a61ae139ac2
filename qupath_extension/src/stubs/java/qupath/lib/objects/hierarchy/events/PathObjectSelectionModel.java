/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.objects.hierarchy.events;

import qupath.lib.objects.PathObject;

import java.util.Collection;
import java.util.Set;

public class PathObjectSelectionModel {
    public synchronized Set<PathObject> getSelectedObjects() {
        throw new UnsupportedOperationException("stub");
    }

    public void deselectObjects(Collection<? extends PathObject> pathObjects) {
        throw new UnsupportedOperationException("stub");
    }
}
