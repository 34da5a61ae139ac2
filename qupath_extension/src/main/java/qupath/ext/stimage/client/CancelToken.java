package qupath.ext.stimage.client;

/**
 * Cancels a request from any thread: the thread waiting for the request sends {@code cancel}
 * to the server and then gets a {@link ServerException} with code {@code cancelled}.
 * Thread-safe. A token cancelled before the request starts cancels it at once.
 */
public final class CancelToken {
    private volatile boolean cancelled;
    private volatile String requestId;

    /** Asks to cancel the request this token was given to. */
    public void cancel() {
        cancelled = true;
    }

    /** @return whether {@link #cancel()} was called */
    public boolean isCancelled() {
        return cancelled;
    }

    /** @return the id of the last request this token was given to, or null before it starts */
    public String getRequestId() {
        return requestId;
    }

    void attach(String id) {
        requestId = id;
    }
}
