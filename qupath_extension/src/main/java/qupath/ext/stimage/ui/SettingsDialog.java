package qupath.ext.stimage.ui;

import javafx.application.Platform;
import javafx.event.ActionEvent;
import javafx.geometry.Insets;
import javafx.scene.control.Button;
import javafx.scene.control.ButtonType;
import javafx.scene.control.ComboBox;
import javafx.scene.control.Dialog;
import javafx.scene.control.Label;
import javafx.scene.control.Spinner;
import javafx.scene.control.TextArea;
import javafx.scene.control.TextField;
import javafx.scene.layout.GridPane;
import javafx.scene.layout.HBox;
import javafx.stage.FileChooser;
import javafx.stage.Window;
import qupath.ext.stimage.client.CurveKeys;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.ModelInfo;
import qupath.ext.stimage.client.StimageClient;
import qupath.ext.stimage.core.Backend;
import qupath.ext.stimage.core.BackendOptions;
import qupath.ext.stimage.core.LocalBackend;
import qupath.ext.stimage.core.UserMessage;
import qupath.ext.stimage.core.UserMessages;

import java.util.concurrent.ExecutorService;

/**
 * Extensions &gt; STImage &gt; Backend settings: the backend's address (with a Test button that
 * asks its hello off the JavaFX thread and shows versions, device and models, or what is wrong),
 * the default model and genes, the timeout, tiles per request and the minimum tissue fraction.
 * Saved in QuPath's preferences.
 */
final class SettingsDialog {
    private SettingsDialog() {
    }

    static void show(Window owner, ExecutorService executor) {
        create(owner, executor).showAndWait();
    }

    /**
     * The settings dialog, built but not shown ({@link #show} shows it and waits); OK with valid
     * values saves the settings in the preferences.
     */
    static Dialog<ButtonType> create(Window owner, ExecutorService executor) {
        Dialog<ButtonType> d = new Dialog<>();
        if (owner != null) {
            d.initOwner(owner);
        }
        d.setTitle("STImage: Backend settings");
        d.setHeaderText("Where the STImage backend listens, and the defaults of each run");
        d.getDialogPane().getButtonTypes().setAll(ButtonType.OK, ButtonType.CANCEL);
        d.setResizable(true);

        TextField address = new TextField(StimagePrefs.server());
        address.setId("address");
        address.setPrefColumnCount(26);
        Button test = new Button("Test connection");
        test.setId("test");
        // CURVE keys of a backend started with --curve-keys DIR (stimage serve --make-keys DIR makes them)
        TextField serverKey = new TextField(StimagePrefs.curveServerKeyProperty().get());
        serverKey.setId("serverKey");
        serverKey.setPromptText("server.key file or its key; empty: no CURVE");
        TextField clientKey = new TextField(StimagePrefs.curveClientKeyProperty().get());
        clientKey.setId("clientKey");
        clientKey.setPromptText("client.key_secret file; empty: no CURVE");
        Button chooseServerKey = keyFileButton("chooseServerKey", serverKey, "server.key");
        Button chooseClientKey = keyFileButton("chooseClientKey", clientKey, CurveKeys.CLIENT_SECRET_FILE);
        TextArea status = new TextArea("Start the backend in a terminal with:  "
                + UserMessages.serveCommand(StimagePrefs.server()) + "\nthen press 'Test connection'. Or let QuPath "
                + "start it: Local backend > Start.");
        status.setId("status");
        status.setEditable(false);
        status.setWrapText(true);
        status.setPrefRowCount(6);
        ComboBox<String> model = new ComboBox<>();
        model.setId("model");
        model.setEditable(true);
        model.setPromptText("backend default");
        model.setValue(StimagePrefs.modelProperty().get());
        TextField genes = new TextField(StimagePrefs.genesProperty().get());
        genes.setId("genes");
        genes.setPromptText("all genes of the model");
        Spinner<Integer> timeout = new Spinner<>(1, BackendOptions.MAX_TIMEOUT_S, StimagePrefs.timeoutS(), 30);
        timeout.setId("timeout");
        timeout.setEditable(true);
        Spinner<Integer> batch = new Spinner<>(1, 512, StimagePrefs.batchSizeProperty().get());
        batch.setId("batch");
        batch.setEditable(true);
        Spinner<Integer> minTissue = new Spinner<>(0, 100,
                (int) Math.round(StimagePrefs.minTissueProperty().get() * 100));
        minTissue.setId("minTissue");
        minTissue.setEditable(true);
        Label error = new Label();
        error.setId("error");
        error.setStyle("-fx-text-fill: #c00000;");
        error.setWrapText(true);

        test.setOnAction(e -> {
            String a;
            CurveKeys keys;
            try {
                a = BackendOptions.checkAddress("settings", address.getText());
                keys = StimagePrefs.curveKeys(serverKey.getText(), clientKey.getText());
            } catch (IllegalArgumentException ex) {
                status.setText(ex.getMessage());
                return;
            }
            status.setText("Asking " + a + " ...");
            test.setDisable(true);
            executor.submit(() -> {
                String text;
                HelloResult hello = null;
                try (StimageClient c = new StimageClient(a, java.time.Duration.ofSeconds(30),
                        Backend.HEARTBEAT_TIMEOUT, keys)) {
                    hello = c.hello();
                    text = describe(hello);
                } catch (Exception ex) {
                    UserMessage m = UserMessages.of(ex, a);
                    text = m.getTitle() + ": " + m.getText() + (m.getCommand() == null ? ""
                            : "\n\n    " + m.getCommand());
                }
                String t = text;
                HelloResult h = hello;
                Platform.runLater(() -> {
                    status.setText(t);
                    test.setDisable(false);
                    if (h != null) {
                        String current = model.getValue();
                        model.getItems().clear();
                        for (ModelInfo m : h.getModels()) {
                            model.getItems().add(m.getName());
                        }
                        model.setValue(current);
                    }
                });
            });
        });

        GridPane g = new GridPane();
        g.setHgap(10);
        g.setVgap(8);
        g.setPadding(new Insets(10));
        int r = 0;
        g.addRow(r++, new Label("Server address"), new HBox(6, address, test));
        g.add(status, 0, r++, 2, 1);
        g.addRow(r++, new Label("Server key (CURVE)"), new HBox(6, serverKey, chooseServerKey));
        g.addRow(r++, new Label("Client key file"), new HBox(6, clientKey, chooseClientKey));
        g.addRow(r++, new Label("Default model"), model);
        g.addRow(r++, new Label("Default genes"), genes);
        g.addRow(r++, new Label("Timeout per request (s)"), timeout);
        g.addRow(r++, new Label("Tiles per request"), batch);
        g.addRow(r++, new Label("Min. tissue per tile (%)"), minTissue);
        LocalBackendPane local = new LocalBackendPane(address::getText, h -> status.setText(describe(h)), true);
        g.addRow(r++, new Label("Local backend"), local.node());
        d.setOnHidden(e -> local.dispose());
        g.add(error, 0, r, 2, 1);
        d.getDialogPane().setContent(g);

        Button ok = (Button) d.getDialogPane().lookupButton(ButtonType.OK);
        ok.addEventFilter(ActionEvent.ACTION, e -> {
            try {
                BackendOptions.checkAddress("settings", address.getText());
                StimagePrefs.curveKeys(serverKey.getText(), clientKey.getText());
                OptionDialogs.intValue(timeout, "Timeout per request (s)");
                OptionDialogs.intValue(batch, "Tiles per request");
                OptionDialogs.intValue(minTissue, "Min. tissue per tile (%)");
            } catch (IllegalArgumentException ex) {
                OptionDialogs.showError(error, ex.getMessage());
                e.consume();
            }
        });
        d.setResultConverter(b -> {
            if (b == ButtonType.OK) {
                StimagePrefs.serverProperty().set(address.getText().trim());
                StimagePrefs.curveServerKeyProperty().set(serverKey.getText().trim());
                StimagePrefs.curveClientKeyProperty().set(clientKey.getText().trim());
                String m = model.getEditor().getText();
                StimagePrefs.modelProperty().set(m == null ? "" : m.trim());
                StimagePrefs.genesProperty().set(genes.getText().trim());
                StimagePrefs.timeoutProperty().set(timeout.getValue());
                StimagePrefs.batchSizeProperty().set(batch.getValue());
                StimagePrefs.minTissueProperty().set(minTissue.getValue() / 100.0);
            }
            return b;
        });
        return d;
    }

    /** A "Choose..." button that puts the path of a chosen key file into {@code field}. */
    private static Button keyFileButton(String id, TextField field, String name) {
        Button b = new Button("Choose...");
        b.setId(id);
        b.setOnAction(e -> {
            FileChooser fc = new FileChooser();
            fc.setTitle("STImage: choose " + name + " (from stimage serve --make-keys DIR)");
            java.io.File f = fc.showOpenDialog(b.getScene() == null ? null : b.getScene().getWindow());
            if (f != null) {
                field.setText(f.getAbsolutePath());
            }
        });
        return b;
    }

    private static String describe(HelloResult h) {
        StringBuilder sb = new StringBuilder("Connected: ").append(h.getServer()).append(' ').append(h.getVersion())
                .append(", protocol ").append(h.getProtocol()).append(", device ").append(h.getDevice()).append('.');
        for (ModelInfo m : h.getModels()) {
            sb.append("\n• ").append(m.getName()).append(m.isDefault() ? " (default)" : "").append(": ")
                    .append(m.getGenes().size()).append(" genes, ").append(OptionDialogs.fmt(m.getTileUm()))
                    .append(" µm tiles at ")
                    .append(m.getTilePx()).append(" px");
        }
        if (h.getModels().isEmpty()) {
            sb.append("\nThe backend serves no model.");
        }
        String mismatch = LocalBackend.versionWarning(h.getVersion(), StimageClient.CLIENT_VERSION);
        if (mismatch != null) {
            sb.append("\n").append(mismatch);
        }
        return sb.toString();
    }
}
