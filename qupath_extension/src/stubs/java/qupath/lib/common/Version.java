/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.common;

public class Version {
    private Version() {
    }

    public static Version parse(String versionString) throws IllegalArgumentException {
        throw new UnsupportedOperationException("stub");
    }
}
