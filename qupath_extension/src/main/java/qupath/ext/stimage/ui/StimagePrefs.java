package qupath.ext.stimage.ui;

import javafx.beans.property.DoubleProperty;
import javafx.beans.property.IntegerProperty;
import javafx.beans.property.StringProperty;
import qupath.ext.stimage.client.CurveKeys;
import qupath.ext.stimage.client.StimageClient;
import qupath.ext.stimage.core.BackendOptions;
import qupath.ext.stimage.core.PredictOptions;
import qupath.lib.gui.prefs.PathPrefs;

import java.nio.file.Path;

/**
 * The extension's preferences, persisted by QuPath (PathPrefs): the backend's address, the
 * default model and genes, the request timeout, tiles per request and the minimum tissue
 * fraction of a tile. Edited in Extensions &gt; STImage &gt; Backend settings.
 */
public final class StimagePrefs {
    private static final StringProperty SERVER = PathPrefs.createPersistentPreference("stimage.server",
            StimageClient.DEFAULT_ADDRESS);
    private static final StringProperty MODEL = PathPrefs.createPersistentPreference("stimage.model", "");
    private static final StringProperty GENES = PathPrefs.createPersistentPreference("stimage.genes", "");
    private static final IntegerProperty TIMEOUT_S = PathPrefs.createPersistentPreference("stimage.timeoutS",
            BackendOptions.DEFAULT_TIMEOUT_S);
    private static final IntegerProperty BATCH_SIZE = PathPrefs.createPersistentPreference("stimage.batchSize",
            PredictOptions.DEFAULT_BATCH_SIZE);
    private static final DoubleProperty MIN_TISSUE = PathPrefs.createPersistentPreference("stimage.minTissue",
            PredictOptions.DEFAULT_MIN_TISSUE);

    private static final StringProperty CURVE_SERVER_KEY = PathPrefs.createPersistentPreference(
            "stimage.curveServerKey", "");
    private static final StringProperty CURVE_CLIENT_KEY = PathPrefs.createPersistentPreference(
            "stimage.curveClientKey", "");

    private StimagePrefs() {
    }

    /** @return the server's CURVE public key: its server.key file or the 40-character key ("" for no CURVE) */
    public static StringProperty curveServerKeyProperty() {
        return CURVE_SERVER_KEY;
    }

    /** @return this client's client.key_secret file ("" for no CURVE) */
    public static StringProperty curveClientKeyProperty() {
        return CURVE_CLIENT_KEY;
    }

    /**
     * The CURVE keys of the preferences (what every connection of the extension uses).
     *
     * @return the keys, or null when none are set
     * @throws IllegalArgumentException keys set but unusable, saying which and how to fix them
     */
    public static CurveKeys curveKeys() {
        return curveKeys(CURVE_SERVER_KEY.get(), CURVE_CLIENT_KEY.get());
    }

    /**
     * @param serverKey the server.key file or the 40-character key, or blank
     * @param clientKeyFile the client.key_secret file, or blank
     * @return the keys, or null when both are blank
     * @throws IllegalArgumentException only one given, or a key that cannot be read
     */
    static CurveKeys curveKeys(String serverKey, String clientKeyFile) {
        String s = serverKey == null ? "" : serverKey.trim();
        String c = clientKeyFile == null ? "" : clientKeyFile.trim();
        if (s.isEmpty() && c.isEmpty()) {
            return null;
        }
        if (s.isEmpty() || c.isEmpty()) {
            throw new IllegalArgumentException("CURVE needs both the server key (server.key) and this client's "
                    + "key file (client.key_secret) from the folder made with `stimage serve --make-keys DIR`; "
                    + "give both, or clear both for a backend without --curve-keys");
        }
        return CurveKeys.load(home(s), Path.of(home(c)));
    }

    private static String home(String path) {
        return path.startsWith("~/") ? System.getProperty("user.home") + path.substring(1) : path;
    }

    /** @return the backend's address, {@code tcp://127.0.0.1:5557} by default */
    public static StringProperty serverProperty() {
        return SERVER;
    }

    /** @return the default model name ("" for the backend's default) */
    public static StringProperty modelProperty() {
        return MODEL;
    }

    /** @return the default genes, comma-separated ("" for all) */
    public static StringProperty genesProperty() {
        return GENES;
    }

    /** @return the request timeout in seconds */
    public static IntegerProperty timeoutProperty() {
        return TIMEOUT_S;
    }

    /** @return tiles per request */
    public static IntegerProperty batchSizeProperty() {
        return BATCH_SIZE;
    }

    /** @return the minimum tissue fraction of a tile sent (0-1) */
    public static DoubleProperty minTissueProperty() {
        return MIN_TISSUE;
    }

    /** @return the address, falling back to the default when the stored one is blank */
    static String server() {
        String s = SERVER.get();
        return s == null || s.isBlank() ? StimageClient.DEFAULT_ADDRESS : s.trim();
    }

    /** @return the timeout, clipped to the allowed range */
    static int timeoutS() {
        return Math.max(1, Math.min(BackendOptions.MAX_TIMEOUT_S, TIMEOUT_S.get()));
    }
}
