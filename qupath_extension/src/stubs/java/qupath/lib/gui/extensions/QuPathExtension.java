/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.gui.extensions;

import qupath.lib.common.Version;
import qupath.lib.gui.QuPathGUI;

public interface QuPathExtension {
    public void installExtension(QuPathGUI qupath);

    public String getName();

    public String getDescription();

    public default Version getQuPathVersion() {
        throw new UnsupportedOperationException("stub");
    }

    public default Version getVersion() {
        throw new UnsupportedOperationException("stub");
    }
}
