/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.objects;

import qupath.lib.objects.classes.PathClass;
import qupath.lib.roi.interfaces.ROI;

import java.util.Collection;
import java.util.UUID;

public abstract class PathObject {
    public synchronized void addChildObjects(Collection<? extends PathObject> pathObjects) {
        throw new UnsupportedOperationException("stub");
    }

    public synchronized void removeChildObjects(Collection<PathObject> pathObjects) {
        throw new UnsupportedOperationException("stub");
    }

    public boolean isAnnotation() {
        throw new UnsupportedOperationException("stub");
    }

    public boolean isDetection() {
        throw new UnsupportedOperationException("stub");
    }

    public boolean isCell() {
        throw new UnsupportedOperationException("stub");
    }

    public boolean isTile() {
        throw new UnsupportedOperationException("stub");
    }

    public Collection<PathObject> getChildObjects() {
        throw new UnsupportedOperationException("stub");
    }

    public abstract PathClass getPathClass();

    public String getName() {
        throw new UnsupportedOperationException("stub");
    }

    public abstract ROI getROI();

    public UUID getID() {
        throw new UnsupportedOperationException("stub");
    }
}
