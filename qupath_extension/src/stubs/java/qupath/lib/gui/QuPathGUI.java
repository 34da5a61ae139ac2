/* Compile-only stand-in for QuPath (see qupath_extension/src/stubs/README.md). Never packaged. */
package qupath.lib.gui;

import javafx.scene.control.Menu;
import javafx.stage.Stage;
import qupath.lib.images.ImageData;

import java.awt.image.BufferedImage;

public class QuPathGUI {
    private QuPathGUI() {
    }

    public Menu getMenu(final String name, final boolean createMenu) {
        throw new UnsupportedOperationException("stub");
    }

    public Stage getStage() {
        throw new UnsupportedOperationException("stub");
    }

    public ImageData<BufferedImage> getImageData() {
        throw new UnsupportedOperationException("stub");
    }
}
