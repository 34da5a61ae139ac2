/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.roi.interfaces;

public interface ROI {
    int getT();

    int getZ();

    double getBoundsX();

    double getBoundsY();

    double getBoundsWidth();

    double getBoundsHeight();

    boolean isArea();

    boolean contains(double x, double y);
}
