package qupath.ext.stimage.client;

import com.google.gson.JsonObject;

/**
 * The JSON header of a reply. Which fields are set depends on {@link #getKind()}:
 * {@code progress} (stage, done, total), {@code heartbeat}, {@code result} (op, result),
 * {@code error} (code, message, details).
 */
public final class ReplyHeader {
    private Integer protocol;
    private String id;
    private String kind;
    private String stage;
    private Integer done;
    private Integer total;
    private String op;
    private JsonObject result;
    private String code;
    private String message;
    private JsonObject details;

    ReplyHeader() {
    }

    static ReplyHeader result(String id, String op, JsonObject result) {
        ReplyHeader h = new ReplyHeader();
        h.protocol = Protocol.VERSION;
        h.id = id;
        h.kind = Protocol.KIND_RESULT;
        h.op = op;
        h.result = result;
        return h;
    }

    /** @return the protocol version (null when absent) */
    public Integer getProtocol() {
        return protocol;
    }

    /** @return the request id, or null for an error about an unreadable header */
    public String getId() {
        return id;
    }

    /** @return {@code progress}, {@code heartbeat}, {@code result} or {@code error} */
    public String getKind() {
        return kind;
    }

    /** @return the progress stage */
    public String getStage() {
        return stage;
    }

    /** @return tiles done (progress), 0 when absent */
    public int getDone() {
        return done == null ? 0 : done;
    }

    /** @return tiles in all (progress), 0 when absent */
    public int getTotal() {
        return total == null ? 0 : total;
    }

    /** @return the op of a result */
    public String getOp() {
        return op;
    }

    /** @return the result object of a result reply */
    public JsonObject getResult() {
        return result;
    }

    /** @return the error code */
    public String getCode() {
        return code;
    }

    /** @return the error message */
    public String getMessage() {
        return message;
    }

    /** @return the error details, or null */
    public JsonObject getDetails() {
        return details;
    }

    /** @return this error reply as an exception */
    public ServerException toException() {
        return new ServerException(code == null ? ErrorCodes.INTERNAL : code,
                message == null ? "the server sent an error without a message" : message, details);
    }
}
