package qupath.ext.stimage.client;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;

/**
 * Protocol v1 of the stimage server (docs/protocol.md): the version, and the encoding of messages
 * (a UTF-8 JSON header frame followed by binary frames) to and from the DTOs of this package.
 */
public final class Protocol {
    /** The protocol version this client speaks. */
    public static final int VERSION = 1;
    /** Reply kind: tiles predicted so far. */
    public static final String KIND_PROGRESS = "progress";
    /** Reply kind: the request is alive. */
    public static final String KIND_HEARTBEAT = "heartbeat";
    /** Reply kind: the final result. */
    public static final String KIND_RESULT = "result";
    /** Reply kind: the final error. */
    public static final String KIND_ERROR = "error";
    /** The dtype of table values: float32 little-endian. */
    public static final String TABLE_DTYPE = "<f4";

    /** Drops null fields, so optional params left unset are not sent. Refuses NaN (strict JSON). */
    private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().create();
    /** Writes explicit JSON nulls of trees (e.g. the null id of an error reply). */
    private static final Gson GSON_TREE = new GsonBuilder().disableHtmlEscaping().serializeNulls().create();

    private Protocol() {
    }

    /** A multipart message: its JSON header and the binary frames after it. */
    public static final class Message {
        private final JsonObject header;
        private final List<byte[]> frames;

        /**
         * @param header the JSON header
         * @param frames the binary frames after the header (frame 0 is the first after it)
         */
        public Message(JsonObject header, List<byte[]> frames) {
            this.header = Objects.requireNonNull(header, "header must not be null");
            this.frames = Collections.unmodifiableList(new ArrayList<>(frames));
        }

        /** @return the header */
        public JsonObject getHeader() {
            return header;
        }

        /** @return the binary frames */
        public List<byte[]> getFrames() {
            return frames;
        }

        /** @return all frames as sent: the UTF-8 header then the binary frames */
        public List<byte[]> toFrames() {
            List<byte[]> out = new ArrayList<>(frames.size() + 1);
            out.add(encodeHeader(header));
            out.addAll(frames);
            return out;
        }
    }

    /** @return a new request id: {@code j-} and 32 hex digits */
    public static String newRequestId() {
        return "j-" + UUID.randomUUID().toString().replace("-", "");
    }

    /**
     * A DTO (or a {@link JsonElement}) as a JSON object, leaving out null fields, except the
     * members the protocol requires even when null ({@code id} of a reply, {@code stain} of a model).
     *
     * @param dto a DTO of this package
     * @return its JSON object
     */
    public static JsonObject toJsonTree(Object dto) {
        Objects.requireNonNull(dto, "dto must not be null");
        JsonObject o = dto instanceof JsonElement ? ((JsonElement) dto).getAsJsonObject().deepCopy()
                : GSON.toJsonTree(dto).getAsJsonObject();
        if (dto instanceof ReplyHeader && !o.has("id")) {
            o.add("id", JsonNull.INSTANCE);
        }
        if (dto instanceof HelloResult && o.has("models")) {
            for (JsonElement m : o.getAsJsonArray("models")) {
                if (m.isJsonObject() && !m.getAsJsonObject().has("stain")) {
                    m.getAsJsonObject().add("stain", JsonNull.INSTANCE);
                }
            }
        }
        return o;
    }

    /**
     * @param json a JSON element
     * @param type a DTO class of this package
     * @param <T> the DTO type
     * @return the DTO
     * @throws ServerException {@code bad_request} when the JSON does not fit the DTO
     */
    public static <T> T fromJson(JsonElement json, Class<T> type) throws ServerException {
        try {
            T out = GSON.fromJson(json, type);
            if (out == null) {
                throw new ServerException(ErrorCodes.BAD_REQUEST, "expected a " + type.getSimpleName()
                        + " object, got null");
            }
            return out;
        } catch (JsonParseException | IllegalStateException | NumberFormatException e) {
            throw new ServerException(ErrorCodes.BAD_REQUEST, "the JSON does not fit a "
                    + type.getSimpleName() + " (" + e.getMessage() + "); see docs/protocol.md");
        }
    }

    static <T> T copy(T dto, Class<T> type) {
        return GSON.fromJson(GSON.toJsonTree(dto), type);
    }

    /**
     * @param json a JSON element
     * @return compact JSON text, explicit nulls kept
     */
    public static String toJsonString(JsonElement json) {
        return GSON_TREE.toJson(json);
    }

    /**
     * @param header a header object
     * @return its UTF-8 JSON
     * @throws IllegalArgumentException when it holds NaN or infinite numbers (not strict JSON)
     */
    public static byte[] encodeHeader(JsonElement header) {
        checkFinite(header, "header");
        return toJsonString(header).getBytes(StandardCharsets.UTF_8);
    }

    private static void checkFinite(JsonElement e, String where) {
        if (e.isJsonObject()) {
            for (Map.Entry<String, JsonElement> m : e.getAsJsonObject().entrySet()) {
                checkFinite(m.getValue(), where + "." + m.getKey());
            }
        } else if (e.isJsonArray()) {
            int i = 0;
            for (JsonElement v : e.getAsJsonArray()) {
                checkFinite(v, where + "." + i++);
            }
        } else if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber()) {
            double d = e.getAsDouble();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                throw new IllegalArgumentException(where + " is " + d + ": JSON of the protocol is strict, "
                        + "send a finite number (or leave the key out)");
            }
        }
    }

    /**
     * @param data a header frame
     * @return the JSON object
     * @throws ServerException {@code bad_request} when it is not a JSON object
     */
    public static JsonObject decodeHeader(byte[] data) throws ServerException {
        JsonElement e;
        try {
            e = JsonParser.parseString(new String(data, StandardCharsets.UTF_8));
        } catch (JsonParseException ex) {
            throw new ServerException(ErrorCodes.BAD_REQUEST, "the header frame is not JSON ("
                    + ex.getMessage() + ")");
        }
        if (!e.isJsonObject()) {
            throw new ServerException(ErrorCodes.BAD_REQUEST, "the header frame is not a JSON object");
        }
        return e.getAsJsonObject();
    }

    /**
     * @param frames a multipart message as received
     * @return its header and binary frames
     * @throws ServerException {@code bad_request} for an empty message or a bad header
     */
    public static Message decodeMessage(List<byte[]> frames) throws ServerException {
        if (frames == null || frames.isEmpty()) {
            throw new ServerException(ErrorCodes.BAD_REQUEST, "an empty message has no header frame");
        }
        return new Message(decodeHeader(frames.get(0)), frames.subList(1, frames.size()));
    }

    /**
     * A request header with {@code protocol} {@link #VERSION}.
     *
     * @param id the request id
     * @param op the op
     * @param params a params DTO, a JsonObject, or null for {@code {}}
     * @return the header
     */
    public static RequestHeader request(String id, String op, Object params) {
        Objects.requireNonNull(id, "id must not be null");
        Objects.requireNonNull(op, "op must not be null");
        return new RequestHeader(id, op, params == null ? new JsonObject() : toJsonTree(params));
    }

    /**
     * @param header a reply header object
     * @return the DTO
     * @throws ServerException {@code bad_request} when it does not fit
     */
    public static ReplyHeader decodeReplyHeader(JsonObject header) throws ServerException {
        return fromJson(header, ReplyHeader.class);
    }

    /**
     * Attaches the table of a {@code table} result from the reply's binary frames.
     *
     * @param result the decoded result
     * @param frames the binary frames of the reply
     * @return the result
     * @throws ServerException {@code bad_request} when the frame reference or its size is wrong
     */
    public static PredictResult attachTable(PredictResult result, List<byte[]> frames) throws ServerException {
        PredictResult.TableRef ref = result.getValuesRef();
        if (ref != null) {
            result.setTable(decodeTable(ref, frames));
        }
        return result;
    }

    /**
     * @param ref the {@code values} reference of a table result
     * @param frames the binary frames of the reply
     * @return rows of float32 values
     * @throws ServerException {@code bad_request} when the reference does not fit the frames
     */
    public static float[][] decodeTable(PredictResult.TableRef ref, List<byte[]> frames) throws ServerException {
        int k = ref.getFrame();
        if (k < 0 || k >= frames.size()) {
            throw new ServerException(ErrorCodes.BAD_REQUEST, "the reply refers to binary frame " + k
                    + "; it has " + frames.size());
        }
        if (!TABLE_DTYPE.equals(ref.getDtype())) {
            throw new ServerException(ErrorCodes.BAD_REQUEST, "table values of dtype " + ref.getDtype()
                    + "; this client reads " + TABLE_DTYPE);
        }
        int[] shape = ref.getShape();
        if (shape == null || shape.length != 2 || shape[0] < 0 || shape[1] < 0) {
            throw new ServerException(ErrorCodes.BAD_REQUEST, "a table's shape must be [rows, columns]");
        }
        byte[] data = frames.get(k);
        if ((long) shape[0] * shape[1] * Float.BYTES != data.length) {
            throw new ServerException(ErrorCodes.BAD_REQUEST, "a " + shape[0] + " x " + shape[1]
                    + " float32 table needs " + (long) shape[0] * shape[1] * Float.BYTES + " bytes; frame "
                    + k + " has " + data.length);
        }
        ByteBuffer buf = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        float[][] out = new float[shape[0]][shape[1]];
        for (float[] row : out) {
            for (int j = 0; j < row.length; j++) {
                row[j] = buf.getFloat();
            }
        }
        return out;
    }

    /**
     * @param table rows of equal length
     * @return float32 little-endian row-major bytes
     */
    public static byte[] encodeTable(float[][] table) {
        int cols = table.length == 0 ? 0 : table[0].length;
        ByteBuffer buf = ByteBuffer.allocate(table.length * cols * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        for (float[] row : table) {
            if (row.length != cols) {
                throw new IllegalArgumentException("table rows differ in length: " + row.length + " != " + cols);
            }
            for (float v : row) {
                buf.putFloat(v);
            }
        }
        return buf.array();
    }

    /**
     * A table result's reply: its header and the values as binary frame 0.
     *
     * @param id the request id
     * @param result a table result with its table attached
     * @return the message
     */
    public static Message tableReply(String id, PredictResult result) {
        ReplyHeader h = ReplyHeader.result(id, "predict", toJsonTree(result));
        float[][] t = result.rawTable();
        return new Message(toJsonTree(h), t == null ? List.of() : List.of(encodeTable(t)));
    }

    /**
     * Checks that a hello result speaks this client's protocol.
     *
     * @param hello the result of hello
     * @throws ServerException {@code unsupported_protocol} naming both versions
     */
    public static void checkHello(HelloResult hello) throws ServerException {
        if (hello.getProtocol() != VERSION && !hello.getProtocols().contains(VERSION)) {
            JsonObject details = new JsonObject();
            details.add("server_protocols", GSON.toJsonTree(hello.getProtocols()));
            throw new ServerException(ErrorCodes.UNSUPPORTED_PROTOCOL, "the server speaks protocol "
                    + hello.getProtocols() + ", this client " + VERSION
                    + ": update the extension or the server to the same version", details);
        }
    }
}
