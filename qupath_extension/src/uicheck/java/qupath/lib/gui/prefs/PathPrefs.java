/*
 * UI-check stand-in for QuPath's PathPrefs (see qupath_extension/src/uicheck/README.md). Never packaged.
 * Same signatures as qupath_extension/src/stubs (QuPath v0.7.0); the preferences live in memory only,
 * so that the extension's dialogs can be opened outside QuPath.
 */
package qupath.lib.gui.prefs;

import javafx.beans.property.DoubleProperty;
import javafx.beans.property.IntegerProperty;
import javafx.beans.property.SimpleDoubleProperty;
import javafx.beans.property.SimpleIntegerProperty;
import javafx.beans.property.SimpleStringProperty;
import javafx.beans.property.StringProperty;

public class PathPrefs {
    private PathPrefs() {
    }

    public static IntegerProperty createPersistentPreference(final String name, final int defaultValue) {
        return new SimpleIntegerProperty(null, name, defaultValue);
    }

    public static DoubleProperty createPersistentPreference(final String name, final double defaultValue) {
        return new SimpleDoubleProperty(null, name, defaultValue);
    }

    public static StringProperty createPersistentPreference(final String name, final String defaultValue) {
        return new SimpleStringProperty(null, name, defaultValue);
    }
}
