package qupath.ext.stimage.ui;

import javafx.beans.property.DoubleProperty;
import javafx.beans.property.IntegerProperty;
import javafx.beans.property.StringProperty;
import qupath.ext.stimage.client.StimageClient;
import qupath.ext.stimage.core.BackendOptions;
import qupath.ext.stimage.core.PredictOptions;
import qupath.lib.gui.prefs.PathPrefs;

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

    private StimagePrefs() {
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
