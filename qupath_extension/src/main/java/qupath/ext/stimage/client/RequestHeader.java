package qupath.ext.stimage.client;

import com.google.gson.JsonObject;

/** The JSON header of a request: {@code {"protocol": 1, "id": ..., "op": ..., "params": {...}}}. */
public final class RequestHeader {
    private int protocol = Protocol.VERSION;
    private String id;
    private String op;
    private JsonObject params;

    RequestHeader() {
    }

    /**
     * @param id the client-chosen request id (1-128 characters)
     * @param op the operation, e.g. {@code predict}
     * @param params its parameters (may be null)
     */
    public RequestHeader(String id, String op, JsonObject params) {
        this.id = id;
        this.op = op;
        this.params = params;
    }

    /** @return the protocol version of the request */
    public int getProtocol() {
        return protocol;
    }

    /** @param protocol the protocol version (only tests send another than {@link Protocol#VERSION}) */
    public void setProtocol(int protocol) {
        this.protocol = protocol;
    }

    /** @return the request id */
    public String getId() {
        return id;
    }

    /** @return the op */
    public String getOp() {
        return op;
    }

    /** @return the params object, or null */
    public JsonObject getParams() {
        return params;
    }

    /** @param params the params object */
    public void setParams(JsonObject params) {
        this.params = params;
    }
}
