package qupath.ext.stimage.client;

/** Params of {@code cancel}: {@code {"target": "<request id>"}}. */
public final class CancelParams {
    private String target;

    CancelParams() {
    }

    /** @param target the id of the request to cancel */
    public CancelParams(String target) {
        this.target = target;
    }

    /** @return the id of the request to cancel */
    public String getTarget() {
        return target;
    }
}
