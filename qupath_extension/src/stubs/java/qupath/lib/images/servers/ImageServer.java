/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.images.servers;

import qupath.lib.regions.RegionRequest;

import java.io.IOException;

public interface ImageServer<T> {
    String getPath();

    int getWidth();

    int getHeight();

    boolean isRGB();

    default PixelCalibration getPixelCalibration() {
        throw new UnsupportedOperationException("stub");
    }

    default T readRegion(RegionRequest request) throws IOException {
        throw new UnsupportedOperationException("stub");
    }

    ImageServerMetadata getMetadata();
}
