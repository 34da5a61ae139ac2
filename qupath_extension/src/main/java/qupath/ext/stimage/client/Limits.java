package qupath.ext.stimage.client;

import com.google.gson.annotations.SerializedName;

/** The server's limits, from hello (see docs/protocol.md, "hello"). */
public final class Limits {
    @SerializedName("max_header_bytes")
    private long maxHeaderBytes;
    @SerializedName("max_frame_bytes")
    private long maxFrameBytes;
    @SerializedName("max_request_bytes")
    private long maxRequestBytes;
    @SerializedName("max_frames")
    private int maxFrames;
    @SerializedName("max_tiles")
    private int maxTiles;
    @SerializedName("max_tile_px")
    private int maxTilePx;
    @SerializedName("max_slide_tiles")
    private int maxSlideTiles;
    @SerializedName("max_requests")
    private int maxRequests;
    @SerializedName("max_client_requests")
    private Integer maxClientRequests;
    @SerializedName("batch_size")
    private int batchSize;
    @SerializedName("heartbeat_s")
    private double heartbeatS;
    @SerializedName("default_deadline_s")
    private double defaultDeadlineS;
    @SerializedName("max_deadline_s")
    private double maxDeadlineS;
    @SerializedName("scale_tolerance")
    private double scaleTolerance;

    Limits() {
    }

    /** @return largest header frame in bytes */
    public long getMaxHeaderBytes() {
        return maxHeaderBytes;
    }

    /** @return largest binary frame in bytes */
    public long getMaxFrameBytes() {
        return maxFrameBytes;
    }

    /** @return largest request (all frames) in bytes */
    public long getMaxRequestBytes() {
        return maxRequestBytes;
    }

    /** @return most binary frames per request */
    public int getMaxFrames() {
        return maxFrames;
    }

    /** @return most tiles per request */
    public int getMaxTiles() {
        return maxTiles;
    }

    /** @return longest side of a tile image */
    public int getMaxTilePx() {
        return maxTilePx;
    }

    /** @return most tiles of one slide request */
    public int getMaxSlideTiles() {
        return maxSlideTiles;
    }

    /** @return requests in flight before {@code busy} */
    public int getMaxRequests() {
        return maxRequests;
    }

    /**
     * @return requests one client may have in flight at once (servers before this limit
     *     existed do not send it: then {@link #getMaxRequests()})
     */
    public int getMaxClientRequests() {
        return maxClientRequests == null ? maxRequests : maxClientRequests;
    }

    /** @return tiles per forward pass */
    public int getBatchSize() {
        return batchSize;
    }

    /** @return seconds between heartbeats */
    public double getHeartbeatS() {
        return heartbeatS;
    }

    /** @return the deadline of a request without one, in seconds */
    public double getDefaultDeadlineS() {
        return defaultDeadlineS;
    }

    /** @return the longest deadline allowed, in seconds */
    public double getMaxDeadlineS() {
        return maxDeadlineS;
    }

    /** @return accepted relative error of a tile's physical size */
    public double getScaleTolerance() {
        return scaleTolerance;
    }
}
