/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.regions;

public class RegionRequest {
    private RegionRequest() {
    }

    public static RegionRequest createInstance(String path, double downsample, int x, int y, int width, int height,
            int z, int t) {
        throw new UnsupportedOperationException("stub");
    }

    public static RegionRequest createInstance(String path, double downsample, int x, int y, int width, int height) {
        throw new UnsupportedOperationException("stub");
    }
}
