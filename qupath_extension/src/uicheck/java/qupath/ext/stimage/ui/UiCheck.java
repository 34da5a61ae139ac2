/*
 * Headless check of the extension's JavaFX dialogs (see qupath_extension/src/uicheck/README.md).
 * Never packaged. Run by scripts/qupath_ui_screenshots.sh (and, checks only, scripts/java_test.sh).
 */
package qupath.ext.stimage.ui;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import javafx.application.Platform;
import javafx.geometry.Bounds;
import javafx.geometry.Orientation;
import javafx.scene.Node;
import javafx.scene.Parent;
import javafx.scene.Scene;
import javafx.scene.control.Alert;
import javafx.scene.control.Button;
import javafx.scene.control.ButtonType;
import javafx.scene.control.CheckBox;
import javafx.scene.control.ChoiceBox;
import javafx.scene.control.ComboBox;
import javafx.scene.control.Dialog;
import javafx.scene.control.DialogPane;
import javafx.scene.control.Label;
import javafx.scene.control.Labeled;
import javafx.scene.control.ProgressBar;
import javafx.scene.control.ScrollBar;
import javafx.scene.control.Spinner;
import javafx.scene.control.TextArea;
import javafx.scene.control.TextField;
import javafx.scene.control.TextInputControl;
import javafx.scene.image.PixelReader;
import javafx.scene.image.WritableImage;
import javafx.scene.input.Clipboard;
import javafx.scene.text.Text;
import javafx.stage.Stage;
import javafx.stage.WindowEvent;
import qupath.ext.stimage.client.CancelToken;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.ModelInfo;
import qupath.ext.stimage.client.Protocol;
import qupath.ext.stimage.client.ServerException;
import qupath.ext.stimage.client.StimageClient;
import qupath.ext.stimage.core.CellsOptions;
import qupath.ext.stimage.core.ExplainOptions;
import qupath.ext.stimage.core.LocalBackend;
import qupath.ext.stimage.core.PixelSize;
import qupath.ext.stimage.core.PredictOptions;
import qupath.ext.stimage.core.Region;
import qupath.ext.stimage.core.StimageException;
import qupath.ext.stimage.core.UserMessage;
import qupath.ext.stimage.core.UserMessages;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * Opens each of the extension's dialogs with realistic content (the models and genes of a live
 * backend's hello, or of the protocol fixture), checks them as a user would (defaults, texts not
 * cut off, windows that fit a laptop screen, clear messages for bad input, Cancel firing the run's
 * token, Copy putting the command on the clipboard) and, with {@code --out DIR}, writes a PNG
 * snapshot of each window. Exits 1 when a check fails.
 *
 * <pre>
 * java ... qupath.ext.stimage.ui.UiCheck [--out DIR] [--live] [--repo DIR]
 * </pre>
 * {@code --live} starts {@code <repo>/.venv/bin/stimage serve} on a free port (as the live client
 * tests do) and uses its hello; without it the hello comes from tests/fixtures/protocol.
 */
public final class UiCheck {
    /** A window larger than this does not fit a 1366 x 768 laptop screen with QuPath's own bars. */
    private static final double MAX_W = 1000;
    private static final double MAX_H = 700;
    private static final String IMAGE = "B4_crop.jpg";
    private static final String PIXEL_SIZE = "0.689 µm/px";

    private final Path repo;
    private final Path out;
    private final boolean live;
    private final List<String> failures = new ArrayList<>();
    private final List<String> shots = new ArrayList<>();
    private int checks;
    private Process server;
    private String liveAddress;
    private final ExecutorService executor = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "uicheck");
        t.setDaemon(true);
        return t;
    });

    private UiCheck(Path repo, Path out, boolean live) {
        this.repo = repo;
        this.out = out;
        this.live = live;
    }

    public static void main(String[] args) throws Exception {
        Path repo = Paths.get("").toAbsolutePath();
        Path out = null;
        boolean live = false;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--out":
                    out = Paths.get(args[++i]).toAbsolutePath();
                    break;
                case "--repo":
                    repo = Paths.get(args[++i]).toAbsolutePath();
                    break;
                case "--live":
                    live = true;
                    break;
                default:
                    System.err.println("usage: UiCheck [--out DIR] [--live] [--repo DIR]");
                    System.exit(2);
            }
        }
        UiCheck c = new UiCheck(repo, out, live);
        int rc;
        try {
            rc = c.runAll();
        } catch (Throwable t) {
            t.printStackTrace();
            rc = 1;
        } finally {
            c.stopServer();
        }
        Platform.exit();
        System.exit(rc);
    }

    private int runAll() throws Exception {
        HelloResult hello = live ? startServer() : fixtureHello();
        ModelInfo m = hello.getDefaultModel();
        System.out.println("uicheck: hello from " + (live ? "the live backend at " + liveAddress : "the protocol fixture")
                + ": model " + m.getName() + ", " + m.getGenes().size() + " genes, " + m.getTileUm() + " µm tiles");
        CompletableFuture<Void> started = new CompletableFuture<>();
        Platform.startup(() -> started.complete(null));
        started.get(60, TimeUnit.SECONDS);
        Platform.setImplicitExit(false);
        if (out != null) {
            Files.createDirectories(out);
        }

        List<String> demo = demoGenes(m);
        predictDialog(hello, demo);
        predictWithoutPixelSize(hello);
        cellsDialog();
        explainDialog(hello, demo);
        settingsDialog(hello);
        progressWindow();
        errorDialogs();
        localBackend();

        executor.shutdownNow();
        System.out.println("uicheck: " + checks + " checks, " + failures.size() + " failed"
                + (out == null ? "" : "; " + shots.size() + " screenshots in " + out));
        for (String f : failures) {
            System.out.println("  FAILED: " + f);
        }
        return failures.isEmpty() ? 0 : 1;
    }

    // -- the dialogs -------------------------------------------------------------------------

    private void predictDialog(HelloResult hello, List<String> demo) throws Exception {
        ModelInfo m = hello.getDefaultModel();
        OptionDialogs.ImageState image = new OptionDialogs.ImageState(IMAGE, PIXEL_SIZE, 1);
        OptionDialogs.Form<PredictOptions> f = fx(() -> OptionDialogs.predictForm(null, hello, image));
        fx(() -> f.dialog.show());
        DialogPane p = f.dialog.getDialogPane();
        fx(() -> {
            check("predict: model defaults to the backend's", "(backend default)".equals(
                    node(p, "model", ComboBox.class).getValue()));
            String info = node(p, "modelInfo", Label.class).getText();
            check("predict: model line gives genes and tile size: " + info,
                    info.startsWith(m.getGenes().size() + " genes, ") && info.contains("µm tiles"));
            TextField genes = node(p, "genes", TextField.class);
            check("predict: genes empty (all) by default, with a prompt saying so",
                    genes.getText().isEmpty() && "all genes of the model".equals(genes.getPromptText()));
            check("predict: region defaults to the selected annotation", node(p, "region", ChoiceBox.class)
                    .getValue() == Region.SELECTED && hasText(p, "Selected annotations (1)"));
            check("predict: pixel size shown from the image", hasText(p, PIXEL_SIZE + " (from the image)"));
            check("predict: no µm/px field for a calibrated image", p.lookup("#mpp") == null);
            check("predict: min. tissue 25 %", spinner(p, "minTissue").getValue() == 25);
            check("predict: 32 tiles per request, within the backend's limit", spinner(p, "batch").getValue()
                    == PredictOptions.DEFAULT_BATCH_SIZE && (hello.getLimits() == null
                    || PredictOptions.DEFAULT_BATCH_SIZE <= hello.getLimits().getMaxTiles()));
            genes.setText(String.join(", ", demo));
            Label rel = node(p, "geneReliability", Label.class);
            ModelInfo dm = hello.getDefaultModel();
            check("predict: each gene typed is shown with its held-out reliability: " + rel.getText(),
                    rel.getText().equals(OptionDialogs.geneReliability(dm, genes.getText()))
                    && (dm.getGenePcc() == null || dm.getGenePcc().isEmpty()
                    || rel.getText().contains(demo.get(0) + " (held-out PCC ")));
            return null;
        });
        shoot("predict", f.dialog.getDialogPane().getScene());

        String unknown = "NOTAGENE";
        rejects(f, "predict: unknown gene", () -> text(p, "genes", demo.get(0) + ", " + unknown),
                "does not predict " + unknown);
        String lower = demo.get(0).toLowerCase();
        if (!lower.equals(demo.get(0))) {
            rejects(f, "predict: wrong case of a gene", () -> text(p, "genes", lower),
                    "did you mean " + demo.get(0));
        }
        fx(() -> text(p, "genes", String.join(", ", demo)));
        rejects(f, "predict: non-numeric tiles per request", () -> text(p, "batch", "abc"),
                "Tiles per request must be a whole number from 1 to 512; got 'abc'");
        rejects(f, "predict: 0 tiles per request", () -> text(p, "batch", "0"),
                "Tiles per request must lie between 1 and 512");
        fx(() -> text(p, "batch", "32"));
        rejects(f, "predict: 150 % tissue", () -> text(p, "minTissue", "150"),
                "Min. tissue per tile (%) must lie between 0 and 100");
        fx(() -> text(p, "minTissue", "25"));
        accepts(f, "predict");
        fx(() -> {
            PredictOptions o = f.result().orElse(null);
            check("predict: OK gives the options", o != null);
            if (o != null) {
                check("predict: genes " + o.getGenes(), demo.equals(o.getGenes()));
                check("predict: model = backend default, region selected, pixel size from the image",
                        o.getModel() == null && o.getRegion() == Region.SELECTED && o.getMpp() == null);
                check("predict: 32 tiles per request, 25 % tissue", o.getBatchSize() == 32
                        && o.getMinTissue() == 0.25);
            }
            check("predict: genes kept as the default for next time", String.join(", ", demo)
                    .equals(StimagePrefs.genesProperty().get()));
            return null;
        });

        // Cancel gives nothing
        OptionDialogs.Form<PredictOptions> c = fx(() -> OptionDialogs.predictForm(null, hello, image));
        fx(() -> {
            c.dialog.show();
            check("predict: the genes typed last time come back", String.join(", ", demo).equals(
                    node(c.dialog.getDialogPane(), "genes", TextField.class).getText()));
            button(c.dialog.getDialogPane(), ButtonType.CANCEL).fire();
            check("predict: Cancel closes the dialog and gives no options", !c.dialog.isShowing()
                    && c.result().isEmpty());
            return null;
        });
    }

    private void predictWithoutPixelSize(HelloResult hello) throws Exception {
        OptionDialogs.ImageState image = new OptionDialogs.ImageState(IMAGE, null, 0);
        OptionDialogs.Form<PredictOptions> f = fx(() -> OptionDialogs.predictForm(null, hello, image));
        fx(() -> f.dialog.show());
        DialogPane p = f.dialog.getDialogPane();
        fx(() -> {
            check("no pixel size: µm/px field with a prompt", p.lookup("#mpp") != null
                    && node(p, "mpp", TextField.class).getPromptText().contains("e.g. 0.5"));
            check("no pixel size: the dialog says so", hasText(p, "This image has no pixel size"));
            check("no pixel size: nothing selected reads as the whole image",
                    hasText(p, "Selected annotations (none: whole image)"));
            return null;
        });
        rejects(f, "no pixel size: OK with the field empty", () -> text(p, "mpp", ""),
                "This image has no pixel size: type its µm per pixel.");
        rejects(f, "no pixel size: 500 µm/px", () -> text(p, "mpp", "500"), "µm per pixel must lie between 0.01 "
                + "and 100");
        rejects(f, "no pixel size: 0 µm/px", () -> text(p, "mpp", "0"), "µm per pixel must lie between");
        rejects(f, "no pixel size: non-numeric µm/px", () -> text(p, "mpp", "0.69um"),
                "µm per pixel must be a number, e.g. 0.5; got '0.69um'");
        shoot("predict_no_pixel_size", p.getScene());
        fx(() -> {
            text(p, "mpp", "0,689");
            text(p, "genes", "");
            return null;
        });
        accepts(f, "no pixel size: 0,689 typed (decimal comma)");
        fx(() -> {
            PredictOptions o = f.result().orElse(null);
            check("no pixel size: the typed µm/px is used", o != null && o.getMpp() != null
                    && Math.abs(o.getMpp() - 0.689) < 1e-12);
            check("predict: empty genes = all genes of the model", o != null && o.getGenes() == null);
            return null;
        });
    }

    private void cellsDialog() throws Exception {
        OptionDialogs.ImageState image = new OptionDialogs.ImageState(IMAGE, PIXEL_SIZE, 1);
        OptionDialogs.Form<CellsOptions> f = fx(() -> OptionDialogs.cellsForm(null, image));
        fx(() -> f.dialog.show());
        DialogPane p = f.dialog.getDialogPane();
        fx(() -> {
            check("cells: typing on by default", node(p, "classify", CheckBox.class).isSelected());
            check("cells: selected annotation, pixel size from the image", hasText(p, "Selected annotations (1)")
                    && hasText(p, PIXEL_SIZE + " (from the image)"));
            return null;
        });
        shoot("cells", p.getScene());
        accepts(f, "cells");
        fx(() -> {
            CellsOptions o = f.result().orElse(null);
            check("cells: OK gives typed cells of the selection", o != null && o.isClassify()
                    && o.getRegion() == Region.SELECTED && o.getMpp() == null);
            return null;
        });
    }

    private void explainDialog(HelloResult hello, List<String> demo) throws Exception {
        ModelInfo m = hello.getDefaultModel();
        OptionDialogs.ImageState image = new OptionDialogs.ImageState(IMAGE, PIXEL_SIZE, 0);
        OptionDialogs.Form<ExplainOptions> first = fx(() -> {
            StimagePrefs.genesProperty().set("");
            return OptionDialogs.explainForm(null, hello, image, "the selected tile");
        });
        fx(() -> {
            first.dialog.show();
            check("explain: without default genes, the model's first gene (" + m.getGenes().get(0) + ")",
                    m.getGenes().get(0).equals(node(first.dialog.getDialogPane(), "gene", ComboBox.class).getValue()));
            button(first.dialog.getDialogPane(), ButtonType.CANCEL).fire();
            return null;
        });
        OptionDialogs.Form<ExplainOptions> f = fx(() -> {
            StimagePrefs.genesProperty().set(String.join(", ", demo));
            return OptionDialogs.explainForm(null, hello, image, "the selected tile");
        });
        fx(() -> f.dialog.show());
        DialogPane p = f.dialog.getDialogPane();
        fx(() -> {
            @SuppressWarnings("unchecked")
            ComboBox<String> gene = node(p, "gene", ComboBox.class);
            check("explain: gene list = the model's " + m.getGenes().size() + " genes",
                    gene.getItems().equals(m.getGenes()));
            check("explain: the first default gene preselected (" + demo.get(0) + ")", demo.get(0).equals(gene.getValue()));
            check("explain: LIME on the mean, 1000 samples", "lime".equals(node(p, "method", ChoiceBox.class)
                    .getValue()) && "mean".equals(node(p, "target", ChoiceBox.class).getValue())
                    && spinner(p, "samples").getValue() == ExplainOptions.DEFAULT_NUM_SAMPLES);
            return null;
        });
        shoot("explain", p.getScene());
        rejects(f, "explain: no gene", () -> comboText(p, "gene", ""), "Choose a gene to explain");
        rejects(f, "explain: unknown gene", () -> comboText(p, "gene", "NOTAGENE"), "does not predict NOTAGENE");
        fx(() -> comboText(p, "gene", demo.get(0)));
        rejects(f, "explain: 5 LIME samples", () -> text(p, "samples", "5"),
                "LIME samples must lie between 10 and 10000");
        fx(() -> text(p, "samples", "1000"));
        accepts(f, "explain");
        fx(() -> {
            ExplainOptions o = f.result().orElse(null);
            check("explain: OK gives one gene, LIME, 1000 samples", o != null && List.of(demo.get(0))
                    .equals(o.getGenes()) && "lime".equals(o.getMethod()) && o.getNumSamples() == 1000);
            return null;
        });
    }

    private void settingsDialog(HelloResult hello) throws Exception {
        if (live) {
            fx(() -> {
                StimagePrefs.serverProperty().set(liveAddress);
                return null;
            });
        }
        Dialog<ButtonType> d = fx(() -> SettingsDialog.create(null, executor));
        fx(() -> d.show());
        DialogPane p = d.getDialogPane();
        String address = live ? liveAddress : "tcp://127.0.0.1:5557";
        fx(() -> {
            check("settings: address " + address, address.equals(node(p, "address", TextField.class).getText()));
            check("settings: tells the command that starts the backend", node(p, "status", TextArea.class)
                    .getText().contains(UserMessages.serveCommand(address)));
            check("settings: timeout 600 s, 32 tiles, 25 % tissue", spinner(p, "timeout").getValue() == 600
                    && spinner(p, "batch").getValue() == 32 && spinner(p, "minTissue").getValue() == 25);
            text(p, "address", "localhost:5557");
            node(p, "test", Button.class).fire();
            check("settings: Test with a bad address says what an address looks like", node(p, "status",
                    TextArea.class).getText().contains("tcp://127.0.0.1:5557"));
            return null;
        });
        fx(() -> text(p, "address", address));
        if (live) {
            fx(() -> {
                node(p, "test", Button.class).fire();
                return null;
            });
            boolean connected = waitFx(() -> node(p, "status", TextArea.class).getText().startsWith("Connected:"),
                    Duration.ofSeconds(60));
            check("settings: Test connection reaches the live backend", connected);
            fx(() -> {
                String status = node(p, "status", TextArea.class).getText();
                System.out.println("uicheck: settings status after Test:\n    " + status.replace("\n", "\n    "));
                @SuppressWarnings("unchecked")
                ComboBox<String> model = node(p, "model", ComboBox.class);
                List<String> names = new ArrayList<>();
                for (ModelInfo mi : hello.getModels()) {
                    names.add(mi.getName());
                }
                check("settings: model list filled from the backend " + names, model.getItems().equals(names));
                check("settings: status lists each model", status.contains(hello.getDefaultModel().getName()
                        + " (default): " + hello.getDefaultModel().getGenes().size() + " genes"));
                return null;
            });
        }
        shoot("settings", p.getScene());
        fx(() -> text(p, "address", "localhost:5557"));
        rejectsDialog(d, "settings: OK with a bad address", "must be an address like tcp://127.0.0.1:5557");
        fx(() -> text(p, "address", address));
        rejectsDialog(d, "settings: non-numeric timeout", () -> text(p, "timeout", "ten"),
                "Timeout per request (s) must be a whole number");
        fx(() -> text(p, "timeout", "600"));
        // CURVE keys: empty by default; one without the other, or the server's secret key file, is refused
        fx(() -> {
            check("settings: no CURVE keys by default", node(p, "serverKey", TextField.class).getText().isEmpty()
                    && node(p, "clientKey", TextField.class).getText().isEmpty());
            return null;
        });
        java.nio.file.Path keyDir = java.nio.file.Files.createTempDirectory("uicheck-keys");
        java.nio.file.Path secret = keyDir.resolve("server.key_secret");
        org.zeromq.ZMQ.Curve.KeyPair pair = org.zeromq.ZMQ.Curve.generateKeyPair();
        java.nio.file.Files.writeString(secret, "metadata\ncurve\n    public-key = \"" + pair.publicKey
                + "\"\n    secret-key = \"" + pair.secretKey + "\"\n");
        rejectsDialog(d, "settings: a server key without the client key file", () -> text(p, "serverKey",
                pair.publicKey), "CURVE needs both the server key (server.key) and this client's key file");
        rejectsDialog(d, "settings: the server's secret key file as the server key", () -> {
            text(p, "serverKey", secret.toString());
            text(p, "clientKey", secret.toString());
        }, "holds the server's SECRET key");
        fx(() -> {
            node(p, "test", Button.class).fire();
            check("settings: Test with unusable keys says what is wrong", node(p, "status", TextArea.class)
                    .getText().contains("SECRET"));
            text(p, "serverKey", "");
            text(p, "clientKey", "");
            return null;
        });
        fx(() -> {
            text(p, "batch", "64");
            button(p, ButtonType.OK).fire();
            check("settings: OK closes and saves", !d.isShowing() && StimagePrefs.batchSizeProperty().get() == 64
                    && address.equals(StimagePrefs.server()));
            StimagePrefs.batchSizeProperty().set(PredictOptions.DEFAULT_BATCH_SIZE);
            return null;
        });
    }

    private void progressWindow() throws Exception {
        CancelToken token = new CancelToken();
        ProgressWindow w = fx(() -> new ProgressWindow(null, "Predict expression", token));
        fx(() -> {
            w.show();
            return null;
        });
        Stage stage = w.stage();
        Scene scene = stage.getScene();
        String line = "Predicting: 12 of 25 tiles (1 skipped: under 25% tissue)";
        // the pipeline calls update from its worker thread
        executor.submit(() -> {
            w.update(0, 25, "Predicting: 0 of 25 tiles");
            w.update(12, 25, line);
        }).get(10, TimeUnit.SECONDS);
        boolean shown = waitFx(() -> line.equals(node(scene.getRoot(), "status", Label.class).getText())
                && Math.abs(node(scene.getRoot(), "progress", ProgressBar.class).getProgress() - 12 / 25.0) < 1e-9,
                Duration.ofSeconds(10));
        check("progress: a worker's update reaches the window (text and bar)", shown);
        fx(() -> {
            check("progress: title", "STImage: Predict expression".equals(stage.getTitle()));
            return null;
        });
        shoot("progress", scene);
        fx(() -> {
            Button cancel = node(scene.getRoot(), "cancel", Button.class);
            check("progress: Cancel is the window's cancel button (Esc)", cancel.isCancelButton());
            cancel.fire();
            check("progress: Cancel fires the run's token", token.isCancelled());
            check("progress: Cancel disables itself and says the run stops", cancel.isDisabled()
                    && node(scene.getRoot(), "status", Label.class).getText().startsWith("Cancelling"));
            return null;
        });
        executor.submit(() -> w.update(13, 25, "Predicting: 13 of 25 tiles")).get(10, TimeUnit.SECONDS);
        fx(() -> null); // let any runLater pass
        fx(() -> {
            check("progress: updates after Cancel do not hide 'Cancelling'", node(scene.getRoot(), "status",
                    Label.class).getText().startsWith("Cancelling"));
            w.close();
            check("progress: closes when the run ends", !stage.isShowing());
            return null;
        });

        CancelToken token2 = new CancelToken();
        ProgressWindow w2 = fx(() -> new ProgressWindow(null, "Detect cells", token2));
        fx(() -> {
            w2.show();
            w2.stage().fireEvent(new WindowEvent(w2.stage(), WindowEvent.WINDOW_CLOSE_REQUEST));
            check("progress: closing the window cancels the run and keeps it open until the run stops",
                    token2.isCancelled() && w2.stage().isShowing());
            w2.close();
            return null;
        });
    }

    private void errorDialogs() throws Exception {
        // backend not running: the real client against a port where nothing listens
        String dead = "tcp://127.0.0.1:" + freePort();
        UserMessage notRunning;
        try (StimageClient c = new StimageClient(dead, Duration.ofSeconds(2), Duration.ofSeconds(1))) {
            c.hello();
            notRunning = null;
        } catch (ServerException e) {
            check("not running: the client reports 'disconnected'", ErrorCodes.DISCONNECTED.equals(e.getCode()));
            notRunning = UserMessages.of(e, "tcp://127.0.0.1:5557");
        }
        check("not running: no hello from a dead port", notRunning != null);
        if (notRunning != null) {
            message("error_backend_not_running", notRunning, "STImage backend not running", "stimage serve");
        }
        // protocol mismatch: what the client makes of the hello of a backend that speaks only protocol 2
        JsonObject newer = fixture("reply_hello_result").getAsJsonObject("header").getAsJsonObject("result");
        newer.addProperty("protocol", Protocol.VERSION + 1);
        newer.add("protocols", JsonParser.parseString("[" + (Protocol.VERSION + 1) + "]"));
        UserMessage mismatch = null;
        try {
            Protocol.checkHello(Protocol.fromJson(newer, HelloResult.class));
        } catch (ServerException e) {
            mismatch = UserMessages.of(e, "tcp://127.0.0.1:5557");
        }
        check("protocol mismatch: the client refuses a backend of protocol " + (Protocol.VERSION + 1), mismatch != null);
        if (mismatch != null) {
            check("protocol mismatch: names both versions", mismatch.getText().contains("protocol " + Protocol.VERSION
                    + ";") && mismatch.getText().contains("speaks protocol " + (Protocol.VERSION + 1) + "."));
            message("error_protocol_mismatch", mismatch, "Protocol version mismatch", null);
        }
        message("error_model_missing", UserMessages.of(fixtureError("reply_error_unknown_model"),
                "tcp://127.0.0.1:5557"), "Model missing", "stimage serve --model /path/to/model-folder");
        UserMessage noPixels = null;
        try {
            PixelSize.resolve(IMAGE, false, Double.NaN, Double.NaN, null);
        } catch (StimageException e) {
            noPixels = e.getUserMessage();
        }
        check("no pixel size: refused by the run", noPixels != null);
        if (noPixels != null) {
            message("error_no_pixel_size", noPixels, "Image without pixel size", null);
        }
    }

    private void message(String name, UserMessage m, String title, String command) throws Exception {
        Alert a = fx(() -> MessageDialogs.create(null, m));
        fx(() -> {
            a.show();
            DialogPane p = a.getDialogPane();
            check(name + ": title '" + title + "'", title.equals(a.getHeaderText()));
            check(name + ": icon matches the severity", a.getAlertType() == (m.getSeverity()
                    == UserMessage.Severity.ERROR ? Alert.AlertType.ERROR : m.getSeverity()
                    == UserMessage.Severity.WARNING ? Alert.AlertType.WARNING : Alert.AlertType.INFORMATION));
            check(name + ": full text shown", m.getText().equals(node(p, "text", Label.class).getText()));
            if (command == null) {
                check(name + ": no command field", p.lookup("#command") == null);
            } else {
                TextField f = node(p, "command", TextField.class);
                check(name + ": command '" + command + "' to copy", command.equals(f.getText()) && !f.isEditable());
            }
            return null;
        });
        shoot(name, a.getDialogPane().getScene());
        if (command != null) {
            fx(() -> {
                node(a.getDialogPane(), "copy", Button.class).fire();
                check(name + ": Copy puts the command on the clipboard", command.equals(
                        Clipboard.getSystemClipboard().getString()));
                return null;
            });
        }
        fx(() -> {
            button(a.getDialogPane(), ButtonType.OK).fire();
            check(name + ": OK closes it", !a.isShowing());
            return null;
        });
    }

    /**
     * The local backend: its part of Backend settings, the Start offer of the "not running"
     * message, a wrong path, a server that exits at once (a shell script), and with --live the
     * real stimage serve started, shown running and stopped.
     */
    private void localBackend() throws Exception {
        Path tmp = Files.createTempDirectory("uicheck-local");
        String savedServer = fx(() -> StimagePrefs.serverProperty().get());
        // Backend settings: a row with Start, Stop, "Options and log..." and the status
        fx(() -> LocalBackends.environmentProperty().set(""));
        Dialog<ButtonType> d = fx(() -> SettingsDialog.create(null, executor));
        fx(() -> {
            d.show();
            DialogPane p = d.getDialogPane();
            check("local: settings have a 'Local backend' row", hasText(p, "Local backend")
                    && p.lookup("#localMore") instanceof Button);
            check("local: Start enabled, Stop disabled when nothing runs", !node(p, "localStart", Button.class)
                    .isDisabled() && node(p, "localStop", Button.class).isDisabled());
            check("local: status 'Not running.'", "Not running.".equals(node(p, "localState", Label.class).getText()));
            node(p, "localStart", Button.class).fire();
            Stage w = localWindow();
            check("local: Start with no environment set opens the window to type it in", w != null);
            if (w != null) {
                Parent root = w.getScene().getRoot();
                check("local: ... which says how to find it (stimage doctor --qupath)", node(root, "localHint",
                        Label.class).getText().contains("stimage doctor --qupath") && node(root, "localEnvironment",
                        TextField.class).getPromptText().contains("stimage doctor --qupath"));
                w.close();
            }
            LocalBackends.environmentProperty().set(tmp.resolve("no-such-env").toString());
            return null;
        });
        shoot("settings_local_backend", d.getDialogPane().getScene());
        fx(() -> node(d.getDialogPane(), "localStart", Button.class).fire());
        boolean refused = waitFx(() -> node(d.getDialogPane(), "localState", Label.class).getText()
                .startsWith("Not running: Python environment not found"), Duration.ofSeconds(30));
        check("local: Start from settings with a wrong path says so in the row", refused);
        fx(() -> {
            check("local: ... and in a message", closeAlert("Python environment not found"));
            node(d.getDialogPane(), "localMore", Button.class).fire();
            Stage w = localWindow();
            check("local: 'Options and log...' opens the window with the environment of the preferences",
                    w != null && tmp.resolve("no-such-env").toString().equals(node(w.getScene().getRoot(),
                            "localEnvironment", TextField.class).getText()));
            if (w != null) {
                w.close();
            }
            button(d.getDialogPane(), ButtonType.CANCEL).fire();
            return null;
        });

        // the "not running" message offers Start only for an address on this computer
        fx(() -> StimagePrefs.serverProperty().set("tcp://gpu-box:5557"));
        Alert remote = fx(() -> MessageDialogs.create(null, UserMessages.of(new ServerException(
                ErrorCodes.DISCONNECTED, "no reply"), "tcp://gpu-box:5557")));
        fx(() -> check("local: no Start offer for a backend on another machine",
                remote.getDialogPane().lookup("#startLocal") == null));
        String localAddress = "tcp://127.0.0.1:" + freePort();
        fx(() -> StimagePrefs.serverProperty().set(localAddress));
        UserMessage down = UserMessages.of(new ServerException(ErrorCodes.DISCONNECTED, "no reply"),
                fx(() -> StimagePrefs.server()));
        Alert a = fx(() -> MessageDialogs.create(null, down));
        fx(() -> {
            a.show();
            check("local: 'backend not running' offers 'Start local backend'", a.getDialogPane().lookup("#startLocal")
                    instanceof Button);
            return null;
        });
        shoot("error_backend_not_running_start", a.getDialogPane().getScene());
        fx(() -> node(a.getDialogPane(), "startLocal", Button.class).fire());
        LocalBackendPane[] pane = new LocalBackendPane[1];
        boolean opened = waitFx(() -> {
            pane[0] = localPane();
            return pane[0] != null && pane[0].lastMessage() != null;
        }, Duration.ofSeconds(30));
        fx(() -> check("local: Start closes the message", !a.isShowing()));
        check("local: Start opens the local backend's window and tries to start", opened);
        if (opened) {
            fx(() -> {
                check("local: a wrong path says 'Python environment not found'", "Python environment not found"
                        .equals(pane[0].lastMessage().getTitle()));
                check("local: ... and names the fix (stimage doctor --qupath)", LocalBackend.DOCTOR_COMMAND
                        .equals(pane[0].lastMessage().getCommand()));
                check("local: the failure pops up its message", closeAlert("Python environment not found"));
                Label state = (Label) localWindow().getScene().getRoot().lookup("#localState");
                check("local: status says it is not running and why", state.getText().startsWith(
                        "Not running: Python environment not found"));
                return null;
            });
        }

        // a server that exits at once: its output reaches the log view and the message
        if (!System.getProperty("os.name", "").toLowerCase().startsWith("windows")) {
            Path exe = tmp.resolve("env/bin/stimage");
            Files.createDirectories(exe.getParent());
            Files.writeString(exe, "#!/bin/sh\necho 'loading the model'\necho 'error: /models/nope: not a model "
                    + "bundle' >&2\nexit 2\n");
            exe.toFile().setExecutable(true);
            fx(() -> text(localWindow().getScene().getRoot(), "localEnvironment", tmp.resolve("env").toString()));
            fx(() -> pane[0].start());
            boolean failed = waitFx(() -> pane[0].lastMessage() != null, Duration.ofSeconds(30));
            check("local: a server that exits at once is reported", failed);
            if (failed) {
                fx(() -> {
                    check("local: ... as 'Local backend did not start'", "Local backend did not start".equals(
                            pane[0].lastMessage().getTitle()));
                    check("local: ... with the log's tail in the message", pane[0].lastMessage().getText()
                            .contains("error: /models/nope: not a model bundle"));
                    check("local: the log view shows its output", pane[0].viewLines().contains("loading the model"));
                    check("local: its message pops up", closeAlert("Local backend did not start"));
                    return null;
                });
                shoot("local_backend_failed", localWindow().getScene());
            }
        }
        if (live) {
            fx(() -> text(localWindow().getScene().getRoot(), "localEnvironment", repo.resolve(".venv").toString()));
            fx(() -> pane[0].start());
            boolean running = waitFx(() -> ((Label) localWindow().getScene().getRoot().lookup("#localState"))
                    .getText().startsWith("Running: "), Duration.ofSeconds(180));
            check("local: Start runs the real stimage serve of .venv", running);
            if (running) {
                long pid = fx(() -> LocalBackends.current().getPid().orElse(-1));
                fx(() -> {
                    check("local: the log view shows 'stimage server on'", pane[0].viewLines().stream()
                            .anyMatch(l -> l.contains("stimage server on")));
                    Parent root = localWindow().getScene().getRoot();
                    check("local: Stop enabled, Start disabled while it runs", !node(root, "localStop", Button.class)
                            .isDisabled() && node(root, "localStart", Button.class).isDisabled());
                    return null;
                });
                shoot("local_backend_running", localWindow().getScene());
                fx(() -> node(localWindow().getScene().getRoot(), "localStop", Button.class).fire());
                boolean stopped = waitFx(() -> ((Label) localWindow().getScene().getRoot().lookup("#localState"))
                        .getText().equals("Stopped."), Duration.ofSeconds(30));
                check("local: Stop stops it", stopped && !ProcessHandle.of(pid).map(ProcessHandle::isAlive)
                        .orElse(false));
            }
        }
        fx(() -> {
            Stage w = localWindow();
            if (w != null) {
                w.close();
            }
            StimagePrefs.serverProperty().set(savedServer);
            LocalBackends.environmentProperty().set("");
            return null;
        });
    }

    private static Stage localWindow() {
        for (javafx.stage.Window w : javafx.stage.Window.getWindows()) {
            if (w instanceof Stage && w.isShowing() && "STImage: Local backend".equals(((Stage) w).getTitle())) {
                return (Stage) w;
            }
        }
        return null;
    }

    private static LocalBackendPane localPane() {
        Stage w = localWindow();
        Node p = w == null ? null : w.getScene().getRoot().lookup(".dialog-pane");
        return p == null ? null : (LocalBackendPane) p.getUserData();
    }

    /** Closes the showing message whose header is {@code header}; false when there is none. */
    private static boolean closeAlert(String header) {
        for (javafx.stage.Window w : new ArrayList<>(javafx.stage.Window.getWindows())) {
            Node p = w.isShowing() && w.getScene() != null ? w.getScene().getRoot().lookup(".dialog-pane") : null;
            if (p instanceof DialogPane && header.equals(((DialogPane) p).getHeaderText())) {
                ((Stage) w).close();
                return true;
            }
        }
        return false;
    }

    // -- checks ------------------------------------------------------------------------------

    private void check(String what, boolean ok) {
        checks++;
        System.out.println((ok ? "ok     " : "FAILED ") + what);
        if (!ok) {
            failures.add(what);
        }
    }

    @FunctionalInterface
    private interface Edit {
        void run() throws Exception;
    }

    /** Edits the form, presses OK: the dialog must stay open and show a message containing {@code expect}. */
    private void rejects(OptionDialogs.Form<?> f, String what, Edit edit, String expect) throws Exception {
        fx(() -> {
            edit.run();
            button(f.dialog.getDialogPane(), ButtonType.OK).fire();
            String err = f.error.getText();
            check(what + " -> stays open with \"" + err + "\"", f.dialog.isShowing() && err != null
                    && err.contains(expect));
            return null;
        });
        layout(what, f.dialog.getDialogPane().getScene());
    }

    private void rejectsDialog(Dialog<ButtonType> d, String what, Edit edit, String expect) throws Exception {
        fx(() -> {
            edit.run();
            return null;
        });
        rejectsDialog(d, what, expect);
    }

    private void rejectsDialog(Dialog<ButtonType> d, String what, String expect) throws Exception {
        fx(() -> {
            button(d.getDialogPane(), ButtonType.OK).fire();
            String err = node(d.getDialogPane(), "error", Label.class).getText();
            check(what + " -> stays open with \"" + err + "\"", d.isShowing() && err != null && err.contains(expect));
            return null;
        });
    }

    private void accepts(OptionDialogs.Form<?> f, String what) throws Exception {
        fx(() -> {
            button(f.dialog.getDialogPane(), ButtonType.OK).fire();
            check(what + ": OK with valid input closes the dialog", !f.dialog.isShowing()
                    && f.dialog.getResult() == ButtonType.OK);
            if (f.dialog.isShowing()) {
                System.out.println("       (error shown: " + f.error.getText() + ")");
                f.dialog.close();
            }
            return null;
        });
    }

    /**
     * What a user would notice: the window fits the screen, no text is cut off ("..."), no control
     * sticks out of the window, a read-only field shows all of its text, a text area needs no scroll bar.
     */
    private void layout(String what, Scene scene) throws Exception {
        fx(() -> {
            scene.getRoot().applyCss();
            scene.getRoot().layout();
            double w = scene.getWidth();
            double h = scene.getHeight();
            check(what + ": window " + Math.round(w) + " x " + Math.round(h) + " px fits a laptop screen",
                    w > 100 && h > 50 && w <= MAX_W && h <= MAX_H);
            List<String> cut = new ArrayList<>();
            for (Node n : all(scene.getRoot())) {
                if (!visible(n)) {
                    continue;
                }
                Bounds b = n.localToScene(n.getLayoutBounds());
                if (n instanceof javafx.scene.control.Control && (b.getMaxX() > w + 1 || b.getMaxY() > h + 1)) {
                    cut.add(n.getClass().getSimpleName() + (n.getId() == null ? "" : "#" + n.getId())
                            + " outside the window");
                }
                if (n instanceof Labeled) {
                    Labeled l = (Labeled) n;
                    String full = l.getText();
                    Text shown = labeledText(l);
                    if (full != null && !full.isEmpty() && shown != null && !full.equals(shown.getText())) {
                        cut.add("'" + full + "' shown as '" + shown.getText() + "'");
                    }
                }
                if (n instanceof TextField && !((TextField) n).isEditable()) {
                    TextField f = (TextField) n;
                    Text t = new Text(f.getText());
                    t.setFont(f.getFont());
                    double room = f.getWidth() - f.getPadding().getLeft() - f.getPadding().getRight();
                    if (t.getLayoutBounds().getWidth() > room) {
                        cut.add("'" + f.getText() + "' wider than its field");
                    }
                }
                if (n instanceof TextArea) {
                    for (Node s : n.lookupAll(".scroll-bar")) {
                        if (s instanceof ScrollBar && ((ScrollBar) s).getOrientation() == Orientation.VERTICAL
                                && visible(s)) {
                            cut.add("text area '" + ((TextArea) n).getText().lines().findFirst().orElse("")
                                    + "...' needs scrolling");
                        }
                    }
                }
            }
            check(what + ": no text cut off" + (cut.isEmpty() ? "" : " " + cut), cut.isEmpty());
            return null;
        });
    }

    private void shoot(String name, Scene scene) throws Exception {
        layout(name, scene);
        if (out == null) {
            return;
        }
        WritableImage img = fx(() -> scene.snapshot(null));
        int w = (int) img.getWidth();
        int h = (int) img.getHeight();
        PixelReader r = img.getPixelReader();
        BufferedImage b = new BufferedImage(w + 2, h + 2, BufferedImage.TYPE_INT_RGB);
        int frame = 0x9a9a9a;
        for (int x = 0; x < w + 2; x++) {
            b.setRGB(x, 0, frame);
            b.setRGB(x, h + 1, frame);
        }
        for (int y = 0; y < h + 2; y++) {
            b.setRGB(0, y, frame);
            b.setRGB(w + 1, y, frame);
        }
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                b.setRGB(x + 1, y + 1, r.getArgb(x, y) & 0xffffff);
            }
        }
        Path file = out.resolve(name + ".png");
        ImageIO.write(b, "png", file.toFile());
        shots.add(name);
        System.out.println("uicheck: wrote " + repo.relativize(file) + " (" + (w + 2) + " x " + (h + 2) + " px, "
                + Files.size(file) / 1024 + " kB)");
    }

    // -- helpers -----------------------------------------------------------------------------

    private static <T> T fx(Callable<T> c) throws Exception {
        CompletableFuture<T> f = new CompletableFuture<>();
        Platform.runLater(() -> {
            try {
                f.complete(c.call());
            } catch (Throwable t) {
                f.completeExceptionally(t);
            }
        });
        return f.get(60, TimeUnit.SECONDS);
    }

    private static void fx(Runnable r) throws Exception {
        fx(() -> {
            r.run();
            return null;
        });
    }

    private static boolean waitFx(Callable<Boolean> condition, Duration timeout) throws Exception {
        long end = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < end) {
            if (fx(condition)) {
                return true;
            }
            Thread.sleep(50);
        }
        return fx(condition);
    }

    private static <T extends Node> T node(Parent root, String id, Class<T> type) {
        Node n = root.lookup("#" + id);
        if (n == null) {
            throw new IllegalStateException("no #" + id + " in " + root);
        }
        return type.cast(n);
    }

    @SuppressWarnings("unchecked")
    private static Spinner<Integer> spinner(Parent root, String id) {
        return node(root, id, Spinner.class);
    }

    private static Button button(DialogPane p, ButtonType type) {
        return (Button) p.lookupButton(type);
    }

    /** Types into a text field, or into a spinner's editor. */
    private static Void text(Parent root, String id, String value) {
        Node n = node(root, id, Node.class);
        TextInputControl t = n instanceof Spinner ? ((Spinner<?>) n).getEditor() : (TextInputControl) n;
        t.setText(value);
        return null;
    }

    private static Void comboText(Parent root, String id, String value) {
        ComboBox<?> c = node(root, id, ComboBox.class);
        c.getEditor().setText(value);
        return null;
    }

    private static boolean hasText(Parent root, String text) {
        for (Node n : all(root)) {
            if (n instanceof Labeled && ((Labeled) n).getText() != null && ((Labeled) n).getText().contains(text)) {
                return true;
            }
        }
        return false;
    }

    private static List<Node> all(Parent root) {
        List<Node> out = new ArrayList<>();
        List<Node> todo = new ArrayList<>(List.of(root));
        while (!todo.isEmpty()) {
            Node n = todo.remove(todo.size() - 1);
            out.add(n);
            if (n instanceof Parent) {
                todo.addAll(((Parent) n).getChildrenUnmodifiable());
            }
        }
        return out;
    }

    private static boolean visible(Node n) {
        for (Node p = n; p != null; p = p.getParent()) {
            if (!p.isVisible()) {
                return false;
            }
        }
        return true;
    }

    /** The text node a Labeled's skin draws (its text after clipping), or null. */
    private static Text labeledText(Labeled l) {
        for (Node c : l.getChildrenUnmodifiable()) {
            if (c instanceof Text && c.getStyleClass().contains("text")) {
                return (Text) c;
            }
        }
        return null;
    }

    private static List<String> demoGenes(ModelInfo m) {
        List<String> out = new ArrayList<>();
        for (String g : List.of("ERBB2", "GATA3", "COX6C", "ESR1")) {
            if (m.getGenes().contains(g)) {
                out.add(g);
            }
        }
        if (out.isEmpty()) {
            out.addAll(m.getGenes().subList(0, Math.min(3, m.getGenes().size())));
        }
        return out;
    }

    private static boolean portFree(int port) {
        try (ServerSocket s = new ServerSocket(port, 1, java.net.InetAddress.getByName("127.0.0.1"))) {
            return s.isBound();
        } catch (IOException e) {
            return false;
        }
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    // -- the hello ---------------------------------------------------------------------------

    private JsonObject fixture(String name) throws IOException {
        Path f = repo.resolve("tests/fixtures/protocol").resolve(name + ".json");
        return JsonParser.parseString(Files.readString(f, StandardCharsets.UTF_8)).getAsJsonObject();
    }

    private HelloResult fixtureHello() throws Exception {
        JsonObject header = fixture("reply_hello_result").getAsJsonObject("header");
        return Protocol.fromJson(Protocol.decodeReplyHeader(header).getResult(), HelloResult.class);
    }

    private ServerException fixtureError(String name) throws Exception {
        return Protocol.decodeReplyHeader(fixture(name).getAsJsonObject("header")).toException();
    }

    private HelloResult startServer() throws Exception {
        Path stimage = repo.resolve(".venv/bin/stimage");
        if (!Files.isExecutable(stimage)) {
            throw new IllegalStateException("--live: no " + stimage + " (run scripts/setup.sh)");
        }
        int port = portFree(5557) ? 5557 : freePort(); // the default address reads best in the screenshots
        liveAddress = "tcp://127.0.0.1:" + port;
        Path log = Files.createTempFile("stimage-uicheck-serve-", ".log");
        server = new ProcessBuilder(stimage.toString(), "serve", "--port", String.valueOf(port), "--device", "cpu")
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        System.out.println("uicheck: started stimage serve on " + liveAddress + " (log " + log + ")");
        long end = System.nanoTime() + Duration.ofSeconds(240).toNanos();
        try (StimageClient c = new StimageClient(liveAddress, Duration.ofSeconds(60), Duration.ofSeconds(5))) {
            while (true) {
                if (!server.isAlive()) {
                    throw new IllegalStateException("stimage serve exited with " + server.exitValue() + "; see " + log);
                }
                try {
                    return c.hello();
                } catch (ServerException e) {
                    if (!ErrorCodes.DISCONNECTED.equals(e.getCode()) || System.nanoTime() > end) {
                        throw e;
                    }
                }
            }
        }
    }

    private void stopServer() {
        if (server == null) {
            return;
        }
        server.destroy();
        try {
            if (!server.waitFor(30, TimeUnit.SECONDS)) {
                server.destroyForcibly();
            }
        } catch (InterruptedException e) {
            server.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }
}
