/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.objects.classes;

public final class PathClass {
    private PathClass() {
    }
}
