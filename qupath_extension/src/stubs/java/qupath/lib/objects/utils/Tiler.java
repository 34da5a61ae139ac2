/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.objects.utils;

import qupath.lib.roi.interfaces.ROI;

import java.util.List;

public class Tiler {
    private Tiler() {
    }

    public List<ROI> createROIs(ROI parent) {
        throw new UnsupportedOperationException("stub");
    }

    public static Builder builder(int tileWidth, int tileHeight) {
        throw new UnsupportedOperationException("stub");
    }

    public static class Builder {
        private Builder() {
        }

        public Builder cropTiles(boolean cropToParent) {
            throw new UnsupportedOperationException("stub");
        }

        public Builder alignCenter() {
            throw new UnsupportedOperationException("stub");
        }

        public Builder filterByCentroid(boolean filterByCentroid) {
            throw new UnsupportedOperationException("stub");
        }

        public Tiler build() {
            throw new UnsupportedOperationException("stub");
        }
    }
}
