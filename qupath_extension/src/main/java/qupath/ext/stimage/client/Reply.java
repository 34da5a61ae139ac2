package qupath.ext.stimage.client;

import com.google.gson.JsonObject;

import java.util.Collections;
import java.util.List;

/** The final {@code result} reply of a request: its header and binary frames. */
public final class Reply {
    private final ReplyHeader header;
    private final List<byte[]> frames;

    Reply(ReplyHeader header, List<byte[]> frames) {
        this.header = header;
        this.frames = Collections.unmodifiableList(frames);
    }

    /** @return the reply header */
    public ReplyHeader getHeader() {
        return header;
    }

    /** @return the result object ({@code {}} when the reply had none) */
    public JsonObject getResult() {
        JsonObject r = header.getResult();
        return r == null ? new JsonObject() : r;
    }

    /** @return the binary frames after the header */
    public List<byte[]> getFrames() {
        return frames;
    }

    /**
     * @param type a result DTO class
     * @param <T> its type
     * @return the result as that DTO
     * @throws ServerException {@code bad_request} when it does not fit
     */
    public <T> T getResult(Class<T> type) throws ServerException {
        return Protocol.fromJson(getResult(), type);
    }
}
