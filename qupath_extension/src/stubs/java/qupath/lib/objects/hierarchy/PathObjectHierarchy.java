/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.objects.hierarchy;

import qupath.lib.objects.PathObject;
import qupath.lib.objects.hierarchy.events.PathObjectSelectionModel;

import java.util.Collection;

public final class PathObjectHierarchy {
    public PathObjectSelectionModel getSelectionModel() {
        throw new UnsupportedOperationException("stub");
    }

    public boolean addObject(PathObject pathObject, boolean fireUpdate) {
        throw new UnsupportedOperationException("stub");
    }

    public Collection<PathObject> getAnnotationObjects() {
        throw new UnsupportedOperationException("stub");
    }

    public void fireHierarchyChangedEvent(Object source, PathObject pathObject) {
        throw new UnsupportedOperationException("stub");
    }
}
