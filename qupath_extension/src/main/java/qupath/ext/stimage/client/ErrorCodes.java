package qupath.ext.stimage.client;

/**
 * The stable error codes of protocol v1 (see docs/protocol.md, "Replies"), plus
 * {@link #DISCONNECTED}, which only clients raise.
 */
public final class ErrorCodes {
    /** The header is not JSON, lacks a field, has a wrong type or unknown key; bad frames; duplicate id. */
    public static final String BAD_REQUEST = "bad_request";
    /** The request's protocol version is not one the server speaks. */
    public static final String UNSUPPORTED_PROTOCOL = "unsupported_protocol";
    /** An op this server does not have. */
    public static final String UNKNOWN_OP = "unknown_op";
    /** A tile without nuclei to explain ({@code explain}). */
    public static final String NO_NUCLEI = "no_nuclei";
    /** A model name not on this server. */
    public static final String UNKNOWN_MODEL = "unknown_model";
    /** Gene names the model does not predict. */
    public static final String UNKNOWN_GENE = "unknown_gene";
    /** A tile is not PNG/JPEG, truncated or corrupt. */
    public static final String BAD_IMAGE = "bad_image";
    /** A tile's physical size differs from the model's tile_um. */
    public static final String WRONG_SCALE = "wrong_scale";
    /** No tissue to fit the stain normalisation. */
    public static final String NO_TISSUE = "no_tissue";
    /** A header, frame, request, tile or tile count over the limits. */
    public static final String TOO_LARGE = "too_large";
    /** Too many requests in flight; retry after {@code details.retry_after_ms}. */
    public static final String BUSY = "busy";
    /** The request's deadline passed (sent by the server, or decided by this client). */
    public static final String DEADLINE = "deadline";
    /** Cancelled by the client. */
    public static final String CANCELLED = "cancelled";
    /** A slide path outside the server's allowed roots. */
    public static final String FORBIDDEN_PATH = "forbidden_path";
    /** A slide file that does not exist. */
    public static final String NOT_FOUND = "not_found";
    /** The server is stopping. */
    public static final String UNAVAILABLE = "unavailable";
    /** A server bug; see the server log. */
    public static final String INTERNAL = "internal";
    /** Never sent: no reply or heartbeat for the heartbeat timeout; the next request reconnects. */
    public static final String DISCONNECTED = "disconnected";
    /**
     * Never sent: the server closes every connection during the ZeroMQ handshake (CURVE keys refused
     * or missing on one side); the message says which keys to check.
     */
    public static final String HANDSHAKE_FAILED = "handshake_failed";

    private ErrorCodes() {
    }
}
