package qupath.ext.stimage.ui;

import javafx.beans.property.IntegerProperty;
import javafx.beans.property.StringProperty;
import javafx.stage.Stage;
import javafx.stage.WindowEvent;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.stimage.core.LocalBackend;
import qupath.lib.gui.QuPathGUI;
import qupath.lib.gui.prefs.PathPrefs;

import java.time.Duration;
import java.util.Objects;

/**
 * The one local backend of this QuPath ({@link LocalBackend}) and its preferences: the Python
 * environment, model folder, CPU threads and start timeout. It is stopped when QuPath's window
 * closes (and, should QuPath exit otherwise, by the JVM shutdown hook {@link LocalBackend} installs).
 */
final class LocalBackends {
    private static final Logger logger = LoggerFactory.getLogger(LocalBackends.class);
    private static final StringProperty ENVIRONMENT = PathPrefs.createPersistentPreference(
            "stimage.local.environment", "");
    private static final StringProperty MODEL = PathPrefs.createPersistentPreference("stimage.local.model", "");
    private static final IntegerProperty THREADS = PathPrefs.createPersistentPreference("stimage.local.threads", 0);
    private static final IntegerProperty START_TIMEOUT_S = PathPrefs.createPersistentPreference(
            "stimage.local.startTimeoutS", (int) LocalBackend.START_TIMEOUT.toSeconds());

    private static LocalBackend current;

    private LocalBackends() {
    }

    /** @return the Python environment's folder, or its stimage program */
    static StringProperty environmentProperty() {
        return ENVIRONMENT;
    }

    /** @return the model folder ("" for the bundled model) */
    static StringProperty modelProperty() {
        return MODEL;
    }

    /** @return CPU threads (0: all) */
    static IntegerProperty threadsProperty() {
        return THREADS;
    }

    /** @return how long a start waits for the backend's first answer */
    static Duration startTimeout() {
        return Duration.ofSeconds(Math.max(10, Math.min(3600, START_TIMEOUT_S.get())));
    }

    /** @return the local backend last configured (running or not), or null */
    static synchronized LocalBackend current() {
        return current;
    }

    /**
     * The backend for the current preferences and an address: the current one when it is busy
     * (starting, running, stopping) or already configured so, else a new one.
     *
     * @param address the server address ({@code tcp://127.0.0.1:port})
     * @return the backend
     * @throws IllegalArgumentException when the address is not on this computer, or a value is out of range
     */
    static synchronized LocalBackend forAddress(String address) {
        int port = LocalBackend.localPort(address);
        LocalBackend.Config c = LocalBackend.Config.builder(ENVIRONMENT.get()).port(port).model(MODEL.get())
                .threads(Math.max(0, THREADS.get())).build();
        if (current != null) {
            LocalBackend.State s = current.getState();
            boolean busy = s == LocalBackend.State.STARTING || s == LocalBackend.State.RUNNING
                    || s == LocalBackend.State.STOPPING;
            if (busy || sameConfig(current.getConfig(), c)) {
                return current;
            }
        }
        current = new LocalBackend(c);
        return current;
    }

    private static boolean sameConfig(LocalBackend.Config a, LocalBackend.Config b) {
        return a.getEnvironment().equals(b.getEnvironment()) && a.getPort() == b.getPort()
                && Objects.equals(a.getModel(), b.getModel()) && a.getThreads() == b.getThreads();
    }

    /**
     * Stops the local backend when QuPath's main window closes.
     *
     * @param qupath QuPath
     */
    static void installCloseHook(QuPathGUI qupath) {
        Stage stage = qupath == null ? null : qupath.getStage();
        if (stage != null) {
            stage.addEventHandler(WindowEvent.WINDOW_HIDDEN, e -> stopInBackground());
        }
    }

    /** Stops the local backend (if any) on a thread of its own; never blocks the caller. */
    static void stopInBackground() {
        LocalBackend b = current();
        if (b == null || b.getPid().isEmpty()) {
            return;
        }
        Thread t = new Thread(() -> {
            logger.info("stopping the local backend at {}", b.getAddress());
            b.stop();
        }, "stimage-local-backend-stop");
        t.start();
    }
}
