package qupath.ext.stimage.client;

/** Result of {@code ping}: {@code {"pong": true}}. */
public final class PingResult {
    private boolean pong;

    PingResult() {
    }

    /** @return true */
    public boolean isPong() {
        return pong;
    }
}
