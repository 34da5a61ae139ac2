package qupath.ext.stimage.ui;

import javafx.application.Platform;
import javafx.stage.Window;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.stimage.STImage;
import qupath.ext.stimage.client.CancelToken;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.core.Backend;
import qupath.ext.stimage.core.RunSummary;
import qupath.ext.stimage.core.TilePipeline;
import qupath.ext.stimage.core.UserMessage;
import qupath.ext.stimage.core.UserMessages;
import qupath.lib.gui.QuPathGUI;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.PixelCalibration;
import qupath.lib.objects.PathObject;

import java.awt.image.BufferedImage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The menu commands. Each one: checks there is an image, asks the backend's hello off the JavaFX
 * thread, shows its options dialog on the JavaFX thread, then runs the STImage scripting API on
 * a worker thread with a progress window (Cancel stops it through the run's token) and shows the
 * outcome. One run at a time.
 */
public final class Commands {
    private static final Logger logger = LoggerFactory.getLogger(Commands.class);
    private static final AtomicInteger THREADS = new AtomicInteger();

    private final QuPathGUI qupath;
    private final ExecutorService executor = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "stimage-" + THREADS.incrementAndGet());
        t.setDaemon(true);
        return t;
    });
    private final AtomicBoolean running = new AtomicBoolean();

    /**
     * @param qupath the QuPath window
     */
    public Commands(QuPathGUI qupath) {
        this.qupath = qupath;
        LocalBackends.installCloseHook(qupath);
    }

    /** Extensions &gt; STImage &gt; Predict expression... */
    public void predict() {
        ImageData<BufferedImage> imageData = imageOrWarn();
        if (imageData == null) {
            return;
        }
        OptionDialogs.ImageState state = state(imageData);
        withHello(hello -> OptionDialogs.predict(owner(), hello, state).ifPresent(o ->
                start("Predict expression", (p, c) -> STImage.predict(imageData, o, p, c), o.getServer())));
    }

    /** Extensions &gt; STImage &gt; Detect cells... */
    public void detectCells() {
        ImageData<BufferedImage> imageData = imageOrWarn();
        if (imageData == null) {
            return;
        }
        OptionDialogs.cells(owner(), state(imageData)).ifPresent(o ->
                start("Detect cells", (p, c) -> STImage.detectCells(imageData, o, p, c), o.getServer()));
    }

    /** Extensions &gt; STImage &gt; Explain tile... */
    public void explain() {
        ImageData<BufferedImage> imageData = imageOrWarn();
        if (imageData == null) {
            return;
        }
        int tiles = 0;
        for (PathObject p : imageData.getHierarchy().getSelectionModel().getSelectedObjects()) {
            if ((p.isTile() || p.isDetection()) && !p.isCell()) {
                tiles++;
            }
        }
        if (tiles == 0) {
            MessageDialogs.show(owner(), new UserMessage(UserMessage.Severity.WARNING, "Select a tile",
                    "Select a tile made by Predict expression (click it in the viewer, or in the hierarchy), then "
                            + "choose Explain tile. Tip: colour the tiles by a gene with Measure > Show "
                            + "measurement maps to find interesting ones.", null));
            return;
        }
        OptionDialogs.ImageState state = state(imageData);
        String what = tiles == 1 ? "the selected tile" : "the " + tiles + " selected tiles";
        withHello(hello -> OptionDialogs.explain(owner(), hello, state, what).ifPresent(o ->
                start("Explain tile", (p, c) -> STImage.explain(imageData, o, p, c), o.getServer())));
    }

    /** Extensions &gt; STImage &gt; Backend settings... */
    public void settings() {
        SettingsDialog.show(owner(), executor);
    }

    // -- plumbing ----------------------------------------------------------------------------

    @FunctionalInterface
    private interface Work {
        RunSummary run(TilePipeline.Progress progress, CancelToken cancel);
    }

    private Window owner() {
        return qupath == null ? null : qupath.getStage();
    }

    private ImageData<BufferedImage> imageOrWarn() {
        ImageData<BufferedImage> imageData = qupath.getImageData();
        if (imageData == null) {
            MessageDialogs.show(owner(), new UserMessage(UserMessage.Severity.WARNING, "No image",
                    "Open an image first (File > Open, or double-click an image of the project).", null));
        }
        return imageData;
    }

    private static OptionDialogs.ImageState state(ImageData<BufferedImage> imageData) {
        PixelCalibration cal = imageData.getServer().getPixelCalibration();
        String px = null;
        if (cal.hasPixelSizeMicrons()) {
            double w = cal.getPixelWidthMicrons();
            double h = cal.getPixelHeightMicrons();
            px = w == h ? String.format("%.4g µm/px", w) : String.format("%.4g x %.4g µm/px", w, h);
        }
        int selected = 0;
        for (PathObject p : imageData.getHierarchy().getSelectionModel().getSelectedObjects()) {
            if (p.isAnnotation() && p.getROI() != null && p.getROI().isArea()) {
                selected++;
            }
        }
        String name = imageData.getServer().getMetadata().getName();
        return new OptionDialogs.ImageState(name == null ? "image" : name, px, selected);
    }

    /** Asks hello off the JavaFX thread, then continues on it (or shows why it failed). */
    private void withHello(java.util.function.Consumer<HelloResult> then) {
        String address = StimagePrefs.server();
        int timeout = StimagePrefs.timeoutS();
        executor.submit(() -> {
            try {
                HelloResult hello = Backend.client(address, timeout).hello();
                Platform.runLater(() -> then.accept(hello));
            } catch (Exception e) {
                UserMessage m = UserMessages.of(e, address);
                Platform.runLater(() -> MessageDialogs.show(owner(), m));
            }
        });
    }

    private void start(String title, Work work, String address) {
        if (!running.compareAndSet(false, true)) {
            MessageDialogs.show(owner(), new UserMessage(UserMessage.Severity.WARNING, "STImage is busy",
                    "Another STImage run is in progress; wait for it to finish or cancel it.", null));
            return;
        }
        CancelToken cancel = new CancelToken();
        ProgressWindow window = new ProgressWindow(owner(), title, cancel);
        window.show();
        executor.submit(() -> {
            UserMessage message;
            try {
                RunSummary s = work.run(window, cancel);
                message = new UserMessage(UserMessage.Severity.INFO, title + ": done", s.describe(), null);
            } catch (STImage.RunException e) {
                message = e.getUserMessage();
            } catch (RuntimeException e) {
                logger.error("STImage {} failed", title, e);
                message = UserMessages.of(e, address);
            } finally {
                running.set(false);
            }
            UserMessage m = message;
            Platform.runLater(() -> {
                window.close();
                MessageDialogs.show(owner(), m);
            });
        });
    }

    /**
     * @return whether a run is in progress
     */
    public boolean isRunning() {
        return running.get();
    }
}
