package qupath.ext.stimage.client;

import com.google.gson.JsonObject;

import java.util.Objects;

/**
 * An error reply of the server (its {@code code}, {@code message} and {@code details}), or an
 * error decided by the client ({@link ErrorCodes#DISCONNECTED}, {@link ErrorCodes#DEADLINE}).
 */
public class ServerException extends Exception {
    private static final long serialVersionUID = 1L;

    private final String code;
    private final String serverMessage;
    private final transient JsonObject details;

    /**
     * @param code a stable code of {@link ErrorCodes}
     * @param message the message: one sentence saying what was wrong and how to fix it
     * @param details optional details (may be null)
     */
    public ServerException(String code, String message, JsonObject details) {
        super(code + ": " + message);
        this.code = Objects.requireNonNull(code, "code must not be null");
        this.serverMessage = Objects.requireNonNullElse(message, "");
        this.details = details == null ? new JsonObject() : details.deepCopy();
    }

    /**
     * @param code a stable code of {@link ErrorCodes}
     * @param message the message
     */
    public ServerException(String code, String message) {
        this(code, message, null);
    }

    /** @return the error code, e.g. {@code unknown_gene} */
    public String getCode() {
        return code;
    }

    /** @return the server's message (without the code), to show to the user */
    public String getServerMessage() {
        return serverMessage;
    }

    /** @return a copy of the details object (empty when the reply had none) */
    public JsonObject getDetails() {
        return details.deepCopy();
    }

    /** @return whether the same request may succeed later (busy, unavailable, disconnected) */
    public boolean isRetryable() {
        return ErrorCodes.BUSY.equals(code) || ErrorCodes.UNAVAILABLE.equals(code)
                || ErrorCodes.DISCONNECTED.equals(code);
    }
}
