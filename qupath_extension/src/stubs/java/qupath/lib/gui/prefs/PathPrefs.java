/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.gui.prefs;

import javafx.beans.property.DoubleProperty;
import javafx.beans.property.IntegerProperty;
import javafx.beans.property.StringProperty;

public class PathPrefs {
    private PathPrefs() {
    }

    public static IntegerProperty createPersistentPreference(final String name, final int defaultValue) {
        throw new UnsupportedOperationException("stub");
    }

    public static DoubleProperty createPersistentPreference(final String name, final double defaultValue) {
        throw new UnsupportedOperationException("stub");
    }

    public static StringProperty createPersistentPreference(final String name, final String defaultValue) {
        throw new UnsupportedOperationException("stub");
    }
}
