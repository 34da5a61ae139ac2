package qupath.ext.stimage.client;

/**
 * Receives the progress replies of a request. Called on the thread that waits for the request;
 * keep it quick (hand work to the UI thread yourself). An exception thrown here cancels the
 * request and is rethrown to the caller.
 */
@FunctionalInterface
public interface ProgressListener {

    /**
     * @param stage {@code prepare} (a slide is being tiled) or {@code predict}
     * @param done tiles predicted so far
     * @param total tiles of the request
     */
    void onProgress(String stage, int done, int total);

    /** Called on each heartbeat (the request is alive). Does nothing by default. */
    default void onHeartbeat() {
    }

    /** A listener that ignores everything. */
    ProgressListener NONE = (stage, done, total) -> { };
}
