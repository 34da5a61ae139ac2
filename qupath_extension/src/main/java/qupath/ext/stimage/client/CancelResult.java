package qupath.ext.stimage.client;

/** Result of {@code cancel}. */
public final class CancelResult {
    private String target;
    private boolean cancelled;

    CancelResult() {
    }

    /** @return the id that was to be cancelled */
    public String getTarget() {
        return target;
    }

    /** @return whether a request of that id was in flight and is now cancelled */
    public boolean isCancelled() {
        return cancelled;
    }
}
