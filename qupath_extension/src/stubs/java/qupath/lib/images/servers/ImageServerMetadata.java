/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.images.servers;

public class ImageServerMetadata {
    private ImageServerMetadata() {
    }

    public String getName() {
        throw new UnsupportedOperationException("stub");
    }
}
