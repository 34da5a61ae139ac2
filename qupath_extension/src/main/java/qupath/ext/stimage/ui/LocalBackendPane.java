package qupath.ext.stimage.ui;

import javafx.application.Platform;
import javafx.geometry.Insets;
import javafx.scene.Node;
import javafx.scene.control.Button;
import javafx.scene.control.ButtonType;
import javafx.scene.control.Dialog;
import javafx.scene.control.Label;
import javafx.scene.control.Spinner;
import javafx.scene.control.TextArea;
import javafx.scene.control.TextField;
import javafx.scene.layout.GridPane;
import javafx.scene.layout.HBox;
import javafx.scene.layout.Priority;
import javafx.scene.layout.Region;
import javafx.scene.layout.VBox;
import javafx.stage.DirectoryChooser;
import javafx.stage.Window;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.core.LocalBackend;
import qupath.ext.stimage.core.StimageException;
import qupath.ext.stimage.core.UserMessage;
import qupath.ext.stimage.core.UserMessages;

import java.io.File;
import java.util.ArrayDeque;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * The local backend's controls: in a window of its own ({@link #showWindow}: the Python
 * environment, model folder and CPU threads, Start and Stop, one line of status, and the
 * backend's output as it comes), and as a row of Backend settings (Start, Stop, "Options and
 * log..." which opens that window, and the status). The "backend not running" message's Start
 * opens the window and starts. Starting and stopping run off
 * the JavaFX thread; a failed start opens a message with the log's last lines and the command to
 * run it in a terminal. The logic is {@link LocalBackend}'s.
 */
final class LocalBackendPane {
    /** Lines of output the view keeps (the log file has all of them). */
    static final int VIEW_LINES = 400;

    private static final Logger logger = LoggerFactory.getLogger(LocalBackendPane.class);

    private final Supplier<String> address;
    private final Consumer<HelloResult> onStarted;
    private final TextField environment = new TextField(LocalBackends.environmentProperty().get());
    private final TextField model = new TextField(LocalBackends.modelProperty().get());
    private final Spinner<Integer> threads = new Spinner<>(0, 1024, Math.max(0, Math.min(1024,
            LocalBackends.threadsProperty().get())));
    private final Button start = new Button("Start");
    private final Button stop = new Button("Stop");
    private final Label state = new Label();
    private final TextArea log = new TextArea();
    private final boolean row;
    private final Node root;
    private final ArrayDeque<String> viewLines = new ArrayDeque<>();
    private final ConcurrentLinkedQueue<String> pending = new ConcurrentLinkedQueue<>();
    private final AtomicBoolean flushScheduled = new AtomicBoolean();
    private final Consumer<String> logListener = this::lineArrived;
    private final Consumer<LocalBackend.State> stateListener = s -> Platform.runLater(this::refresh);
    private LocalBackend attached;
    private String failure;
    private UserMessage lastMessage;

    /**
     * @param address the server address to serve (the settings' address field)
     * @param onStarted called on the JavaFX thread with the hello of a backend that started, or null
     * @param row only Start, Stop, "Options and log..." (which opens {@link #showWindow}) and the
     *     status, for a row of Backend settings (which must still fit a laptop screen); else the
     *     whole part: environment, model folder, threads, the buttons, status and log
     */
    LocalBackendPane(Supplier<String> address, Consumer<HelloResult> onStarted, boolean row) {
        this.address = address;
        this.onStarted = onStarted;
        this.row = row;
        environment.setId("localEnvironment");
        environment.setPromptText("the folder '" + LocalBackend.DOCTOR_COMMAND + "' prints");
        environment.setPrefColumnCount(26);
        model.setId("localModel");
        model.setPromptText("bundled model");
        threads.setId("localThreads");
        threads.setEditable(true);
        threads.setPrefWidth(90);
        start.setId("localStart");
        stop.setId("localStop");
        state.setId("localState");
        state.setWrapText(true);
        state.setMaxWidth(row ? 300 : 440);
        state.setMinHeight(Region.USE_PREF_SIZE);
        start.setMinWidth(Region.USE_PREF_SIZE);
        stop.setMinWidth(Region.USE_PREF_SIZE);
        log.setId("localLog");
        log.setEditable(false);
        log.setPrefRowCount(8);
        log.setStyle("-fx-font-family: monospace; -fx-font-size: 11px;");
        start.setOnAction(e -> start());
        stop.setOnAction(e -> stop());
        if (row) {
            Button more = new Button("Options and log...");
            more.setId("localMore");
            more.setMinWidth(Region.USE_PREF_SIZE);
            more.setOnAction(e -> showWindow(window(), false));
            HBox box = new HBox(6, start, stop, more, state);
            box.setId("localPane");
            root = box;
        } else {
            Button browseEnv = browse("localBrowseEnvironment", environment, "Python environment (venv or conda env)");
            Button browseModel = browse("localBrowseModel", model, "Model folder");
            HBox.setHgrow(environment, Priority.ALWAYS);
            HBox.setHgrow(model, Priority.ALWAYS);
            GridPane g = new GridPane();
            g.setId("localPane");
            g.setHgap(10);
            g.setVgap(6);
            g.setPadding(new Insets(6));
            int r = 0;
            g.addRow(r++, new Label("Python environment"), new HBox(6, environment, browseEnv));
            g.addRow(r++, new Label("Model folder"), new HBox(6, model, browseModel));
            g.addRow(r++, new Label("CPU threads"), new HBox(6, threads, new Label("0 = all cores")));
            g.add(new HBox(6, start, stop, state), 0, r++, 2, 1);
            g.add(log, 0, r++, 2, 1);
            Label hint = new Label("In a terminal of the environment where stimage is installed, "
                    + LocalBackend.DOCTOR_COMMAND + " prints what to paste here. The backend serves the server "
                    + "address of Backend settings, on this computer only, and stops when QuPath closes.");
            hint.setId("localHint");
            hint.setWrapText(true);
            hint.setMaxWidth(560);
            hint.setMinHeight(Region.USE_PREF_SIZE);
            g.add(hint, 0, r, 2, 1);
            root = g;
        }
        LocalBackend current = LocalBackends.current();
        if (current != null) {
            attach(current);
            for (String line : current.getLog().tail(VIEW_LINES)) {
                pending.add(line);
            }
            flush();
        }
        refresh();
    }

    /** @return the pane to put in a dialog */
    Node node() {
        return root;
    }

    private Window window() {
        return root.getScene() == null ? null : root.getScene().getWindow();
    }

    /** @return the message of the last failed start (also shown in its own dialog), or null */
    UserMessage lastMessage() {
        return lastMessage;
    }

    /** Saves the fields in the preferences and starts the backend (the Start button). */
    void start() {
        if (row) {
            // the row shows no fields: start with what the preferences hold (the window may have changed them)
            environment.setText(LocalBackends.environmentProperty().get());
            model.setText(LocalBackends.modelProperty().get());
            threads.getEditor().setText(String.valueOf(Math.max(0, LocalBackends.threadsProperty().get())));
        }
        int n;
        try {
            n = OptionDialogs.intValue(threads, "CPU threads");
        } catch (IllegalArgumentException e) {
            fail(new UserMessage(UserMessage.Severity.WARNING, "Invalid CPU threads", e.getMessage(), null));
            return;
        }
        LocalBackends.environmentProperty().set(environment.getText() == null ? "" : environment.getText().trim());
        LocalBackends.modelProperty().set(model.getText() == null ? "" : model.getText().trim());
        LocalBackends.threadsProperty().set(n);
        LocalBackend b;
        try {
            b = LocalBackends.forAddress(address.get());
        } catch (IllegalArgumentException e) {
            fail(new UserMessage(UserMessage.Severity.WARNING, "Cannot start a local backend", e.getMessage(), null));
            return;
        }
        if (row && LocalBackends.environmentProperty().get().isBlank() && b.getPid().isEmpty()) {
            // first time: the window where the environment is typed, with the hint where to find it
            showWindow(window(), false);
            return;
        }
        attach(b);
        failure = null;
        lastMessage = null;
        viewLines.clear();
        log.clear();
        start.setDisable(true);
        state.setText("Starting...");
        Thread t = new Thread(() -> {
            try {
                HelloResult h = b.start(LocalBackends.startTimeout(), line -> Platform.runLater(() -> {
                    if (b.getState() == LocalBackend.State.STARTING) {
                        state.setText(line);
                    }
                }));
                Platform.runLater(() -> {
                    refresh();
                    if (onStarted != null) {
                        onStarted.accept(h);
                    }
                });
            } catch (StimageException e) {
                Platform.runLater(() -> fail(e.getUserMessage()));
            } catch (RuntimeException e) {
                logger.error("local backend start failed", e);
                Platform.runLater(() -> fail(UserMessages.of(e, b.getAddress())));
            }
        }, "stimage-local-backend-start");
        t.setDaemon(true);
        t.start();
    }

    /** Stops the backend, or cancels its start (the Stop button). */
    void stop() {
        LocalBackend b = attached;
        if (b == null) {
            return;
        }
        stop.setDisable(true);
        start.setDisable(true);
        state.setText("Stopping...");
        Thread t = new Thread(() -> {
            boolean graceful = b.stop();
            Platform.runLater(() -> {
                refresh();
                if (!graceful) {
                    state.setText(state.getText() + " (killed: it did not stop within "
                            + LocalBackend.STOP_GRACE.toSeconds() + " s)");
                    fit();
                }
            });
        }, "stimage-local-backend-stop");
        t.setDaemon(true);
        t.start();
    }

    /** Stops listening to the backend (when the dialog closes); the backend keeps running. */
    void dispose() {
        attach(null);
    }

    private void fail(UserMessage m) {
        lastMessage = m;
        failure = m.getTitle();
        refresh();
        if (m.getSeverity() != UserMessage.Severity.INFO) {
            MessageDialogs.create(window(), m).show();
        }
    }

    private void attach(LocalBackend b) {
        if (attached == b) {
            return;
        }
        if (attached != null) {
            attached.removeLogListener(logListener);
            attached.removeStateListener(stateListener);
        }
        attached = b;
        if (b != null) {
            b.addLogListener(logListener);
            b.addStateListener(stateListener);
        }
    }

    private void refresh() {
        LocalBackend b = attached;
        LocalBackend.State s = b == null ? LocalBackend.State.STOPPED : b.getState();
        start.setDisable(s == LocalBackend.State.STARTING || s == LocalBackend.State.RUNNING
                || s == LocalBackend.State.STOPPING);
        stop.setDisable(b == null || !(s == LocalBackend.State.STARTING || s == LocalBackend.State.RUNNING));
        state.setStyle("");
        switch (s) {
            case RUNNING:
                HelloResult h = b.getHello();
                String w = b.getVersionWarning();
                state.setText("Running: " + (h == null ? "stimage" : h.getServer() + " " + h.getVersion()) + " at "
                        + b.getAddress() + " (pid " + b.getPid().orElse(-1) + ")" + (w == null ? "" : ". " + w));
                if (w != null) {
                    state.setStyle("-fx-text-fill: #b06000;");
                }
                break;
            case STARTING:
                if (state.getText() == null || state.getText().isEmpty()) {
                    state.setText("Starting...");
                }
                break;
            case STOPPING:
                state.setText("Stopping...");
                break;
            default:
                if (failure != null) {
                    state.setText("Not running: " + failure + " (see the message and the log)");
                    state.setStyle("-fx-text-fill: #c00000;");
                } else if (s == LocalBackend.State.FAILED) {
                    state.setText("Not running: it exited by itself (see the log)");
                    state.setStyle("-fx-text-fill: #c00000;");
                } else {
                    state.setText(b == null || b.getLog().lines().isEmpty() ? "Not running." : "Stopped.");
                }
        }
        fit();
    }

    /** Grows the window when a longer status needs more room than it has. */
    private void fit() {
        javafx.scene.Scene scene = root.getScene();
        if (scene != null && scene.getWindow() != null && scene.getWindow().isShowing()) {
            scene.getRoot().applyCss();
            scene.getRoot().layout();
            if (scene.getRoot().prefHeight(scene.getWidth()) > scene.getHeight()) {
                scene.getWindow().sizeToScene();
            }
        }
    }

    private void lineArrived(String line) {
        pending.add(line);
        if (flushScheduled.compareAndSet(false, true)) {
            Platform.runLater(this::flush);
        }
    }

    private void flush() {
        flushScheduled.set(false);
        boolean any = false;
        String line;
        while ((line = pending.poll()) != null) {
            viewLines.addLast(line);
            any = true;
        }
        if (!any) {
            return;
        }
        while (viewLines.size() > VIEW_LINES) {
            viewLines.removeFirst();
        }
        log.setText(String.join("\n", viewLines));
        log.positionCaret(log.getLength());
        log.setScrollTop(Double.MAX_VALUE);
    }

    private Button browse(String id, TextField field, String title) {
        Button b = new Button("Browse...");
        b.setId(id);
        b.setOnAction(e -> {
            DirectoryChooser c = new DirectoryChooser();
            c.setTitle(title);
            String cur = field.getText() == null ? "" : field.getText().trim();
            File f = cur.isEmpty() ? null : new File(cur);
            if (f != null && f.isDirectory()) {
                c.setInitialDirectory(f);
            }
            File chosen = c.showDialog(window());
            if (chosen != null) {
                field.setText(chosen.getAbsolutePath());
            }
        });
        return b;
    }

    /** @return the lines the log view shows (for checks) */
    List<String> viewLines() {
        return List.copyOf(viewLines);
    }

    /**
     * A window with only the local backend's part of the settings, for the Start button of the
     * "backend not running" message.
     *
     * @param owner the owner window, or null
     * @param startNow whether to press Start at once
     * @return the dialog, shown (not waited for)
     */
    static Dialog<ButtonType> showWindow(Window owner, boolean startNow) {
        LocalBackendPane p = new LocalBackendPane(StimagePrefs::server, null, false);
        Dialog<ButtonType> d = new Dialog<>();
        if (owner != null) {
            d.initOwner(owner);
        }
        d.setTitle("STImage: Local backend");
        d.setHeaderText("Start the STImage backend on this computer, at " + StimagePrefs.server());
        d.getDialogPane().getButtonTypes().setAll(ButtonType.CLOSE);
        d.setResizable(true);
        d.getDialogPane().setContent(new VBox(p.root));
        d.getDialogPane().setUserData(p);
        d.setOnHidden(e -> p.dispose());
        d.show();
        if (startNow) {
            p.start();
        }
        return d;
    }
}
