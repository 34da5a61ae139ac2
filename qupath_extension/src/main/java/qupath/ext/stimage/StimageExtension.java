package qupath.ext.stimage;

import javafx.scene.control.Menu;
import javafx.scene.control.MenuItem;
import javafx.scene.control.SeparatorMenuItem;
import qupath.ext.stimage.client.StimageClient;
import qupath.ext.stimage.core.Backend;
import qupath.ext.stimage.ui.Commands;
import qupath.ext.stimage.ui.StimagePrefs;
import qupath.lib.common.Version;
import qupath.lib.gui.QuPathGUI;
import qupath.lib.gui.extensions.GitHubProject;
import qupath.lib.gui.extensions.QuPathExtension;

/**
 * STImage for QuPath: spatial gene expression, cell types and nucleus-level explanations from
 * H&amp;E, computed by the STImage Python backend ({@code stimage serve}). Adds Extensions &gt;
 * STImage &gt; Predict expression..., Detect cells..., Explain tile..., Backend settings....
 * Registered in META-INF/services/qupath.lib.gui.extensions.QuPathExtension.
 */
public class StimageExtension implements QuPathExtension, GitHubProject {
    /** The menu's name under Extensions. */
    public static final String MENU = "Extensions>STImage";

    private boolean installed;
    private Commands commands;

    @Override
    public void installExtension(QuPathGUI qupath) {
        if (installed) {
            return;
        }
        installed = true;
        Backend.setCurveKeySource(StimagePrefs::curveKeys);
        commands = new Commands(qupath);
        Menu menu = qupath.getMenu(MENU, true);
        menu.getItems().addAll(
                item("Predict expression...", commands::predict),
                item("Detect cells...", commands::detectCells),
                item("Explain tile...", commands::explain),
                new SeparatorMenuItem(),
                item("Backend settings...", commands::settings));
    }

    private static MenuItem item(String text, Runnable action) {
        MenuItem item = new MenuItem(text);
        item.setOnAction(e -> action.run());
        return item;
    }

    @Override
    public String getName() {
        return "STImage";
    }

    @Override
    public String getDescription() {
        return "Predicts spatial gene expression, detects and types cells, and explains predictions per "
                + "nucleus on H&E images, with models served by the STImage Python backend (stimage serve).";
    }

    @Override
    public Version getQuPathVersion() {
        return Version.parse("0.6.0");
    }

    @Override
    public Version getVersion() {
        return Version.parse(StimageClient.CLIENT_VERSION);
    }

    @Override
    public GitHubRepo getRepository() {
        return GitHubRepo.create(getName(), "stimage-qupath", "stimage-qupath");
    }
}
