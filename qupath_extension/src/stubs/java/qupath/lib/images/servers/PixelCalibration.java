/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.images.servers;

public class PixelCalibration {
    private PixelCalibration() {
    }

    public boolean hasPixelSizeMicrons() {
        throw new UnsupportedOperationException("stub");
    }

    public double getPixelWidthMicrons() {
        throw new UnsupportedOperationException("stub");
    }

    public double getPixelHeightMicrons() {
        throw new UnsupportedOperationException("stub");
    }
}
