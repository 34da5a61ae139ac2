package qupath.ext.stimage.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import qupath.ext.stimage.client.CancelToken;
import qupath.ext.stimage.client.CurveKeys;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.ModelInfo;
import qupath.ext.stimage.client.ProgressListener;
import qupath.ext.stimage.client.Reply;
import qupath.ext.stimage.client.ServerException;
import qupath.ext.stimage.client.StimageClient;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Supplier;

/**
 * The extension's side of the conversation with the backend, above the protocol client: one
 * shared client per address, choosing the model and checking genes against hello before any
 * pixel is read, and the {@code cells} and {@code explain} requests (their params exactly as
 * docs/protocol.md and tests/fixtures/protocol give them).
 */
public final class Backend {
    /** Silence after which the backend counts as gone (it sends heartbeats every second). */
    public static final Duration HEARTBEAT_TIMEOUT = Duration.ofSeconds(10);

    private static final Map<String, StimageClient> CLIENTS = new ConcurrentHashMap<>();
    private static volatile Supplier<CurveKeys> curveKeys = () -> null;

    private Backend() {
    }

    /**
     * A client shared by every run against the same address and timeout (the client serialises
     * requests, and reconnects by itself after the backend restarts).
     *
     * @param address {@code tcp://host:port}
     * @param timeoutS request timeout in seconds
     * @return the client
     */
    public static StimageClient client(String address, int timeoutS) {
        CurveKeys keys = curveKeys.get();
        String id = keys == null ? "" : keys.getServerPublicKeyZ85() + keys.getClientPublicKeyZ85();
        return CLIENTS.computeIfAbsent(address + "|" + timeoutS + "|" + id,
                k -> new StimageClient(address, Duration.ofSeconds(timeoutS), HEARTBEAT_TIMEOUT, keys));
    }

    /**
     * Where {@link #client} takes its CURVE keys from (the extension: its preferences); without a
     * source, or when it gives null, clients connect without CURVE.
     *
     * @param source gives the keys, or null; it throws IllegalArgumentException for unusable key
     *     settings, which {@link #client} passes on
     */
    public static void setCurveKeySource(Supplier<CurveKeys> source) {
        curveKeys = source == null ? () -> null : source;
    }

    /** Closes every shared client (when QuPath closes, or the address changes). */
    public static void closeClients() {
        for (String k : new ArrayList<>(CLIENTS.keySet())) {
            StimageClient c = CLIENTS.remove(k);
            if (c != null) {
                c.close();
            }
        }
    }

    /**
     * @param hello the backend's hello
     * @param name a model name, or null for the default
     * @return the model
     * @throws ServerException {@code unknown_model} (as the backend would answer), naming the models it has
     */
    public static ModelInfo model(HelloResult hello, String name) throws ServerException {
        ModelInfo m = name == null || name.isBlank() ? hello.getDefaultModel() : hello.getModel(name.trim());
        if (m == null) {
            List<String> names = new ArrayList<>();
            for (ModelInfo mi : hello.getModels()) {
                names.add(mi.getName());
            }
            throw new ServerException(ErrorCodes.UNKNOWN_MODEL, names.isEmpty()
                    ? "the backend serves no model; start it with one (stimage serve --model DIR)"
                    : "no model '" + name + "' on this backend; it has " + names);
        }
        return m;
    }

    /**
     * @param model the model
     * @param genes genes asked for (null: all)
     * @param classifierOnly whether the genes need a high/low classifier (explaining P(high))
     * @throws ServerException {@code unknown_gene} naming the unknown ones
     */
    public static void checkGenes(ModelInfo model, List<String> genes, boolean classifierOnly) throws ServerException {
        if (genes == null) {
            return;
        }
        List<String> known = classifierOnly ? model.getClassifierGenes() : model.getGenes();
        List<String> unknown = new ArrayList<>();
        for (String g : genes) {
            if (!known.contains(g)) {
                unknown.add(g);
            }
        }
        if (!unknown.isEmpty()) {
            throw new ServerException(ErrorCodes.UNKNOWN_GENE, "model '" + model.getName() + "' has no "
                    + (classifierOnly ? "P(high) classifier for " : "") + (unknown.size() == 1 ? "gene " : "genes ")
                    + unknown + " (it has " + known.size() + (classifierOnly ? " classified" : "") + " genes, e.g. "
                    + known.subList(0, Math.min(5, known.size())) + ")");
        }
    }

    /**
     * @param hello the backend's hello
     * @param op an op
     * @throws ServerException {@code unknown_op} when the backend does not list it
     */
    public static void checkOp(HelloResult hello, String op) throws ServerException {
        if (!hello.getOps().isEmpty() && !hello.getOps().contains(op)) {
            throw new ServerException(ErrorCodes.UNKNOWN_OP, "this backend (stimage " + hello.getVersion()
                    + ") has no '" + op + "' operation; it has " + hello.getOps());
        }
    }

    /**
     * The params of a {@code cells} request for an image the client sends (frame 0).
     *
     * @param x full-resolution x of the image's top-left corner
     * @param y full-resolution y
     * @param downsample full-resolution pixels per image pixel
     * @param mpp µm per pixel of the image sent
     * @param classify whether to type the cells
     * @param deadline the request's deadline
     * @return the params
     */
    public static JsonObject cellsParams(double x, double y, double downsample, double mpp, boolean classify,
            Duration deadline) {
        JsonObject image = new JsonObject();
        image.addProperty("frame", 0);
        image.addProperty("x", x);
        image.addProperty("y", y);
        image.addProperty("downsample", downsample);
        JsonObject p = new JsonObject();
        p.add("image", image);
        p.addProperty("mpp", mpp);
        p.addProperty("classify", classify);
        p.addProperty("deadline_ms", Math.max(1L, deadline.toMillis()));
        return p;
    }

    /**
     * The params of an {@code explain} request for a tile the client sends alone (frame 0).
     *
     * @param options genes, method, target, samples, seed, model
     * @param box the tile's box in full-resolution pixels
     * @param mpp µm per pixel of the image sent
     * @param imageId the image's id (stain normalisation as in predict), or null
     * @param deadline the request's deadline
     * @return the params
     */
    public static JsonObject explainParams(ExplainOptions options, double[] box, double mpp, String imageId,
            Duration deadline) {
        return explainParams(options, box, mpp, imageId, deadline, List.of());
    }

    /**
     * The params of an {@code explain} request for a tile the client sends (frame 0) with its
     * neighbours (frames 1 to m, in the order given; see {@link ExplainNeighbours}): a model with
     * spatial context holds their features fixed, so the prediction explained is the tile's with
     * context.
     *
     * @param options genes, method, target, samples, seed, model
     * @param box the tile's box in full-resolution pixels
     * @param mpp µm per pixel of the image sent (frame 0)
     * @param imageId the image's id (stain normalisation as in predict), or null
     * @param deadline the request's deadline
     * @param neighbours the neighbours sent (their boxes), none for the tile alone
     * @return the params ({@code neighbours} only when there are some)
     */
    public static JsonObject explainParams(ExplainOptions options, double[] box, double mpp, String imageId,
            Duration deadline, List<TilePipeline.Tile> neighbours) {
        return explainParams(options, box, mpp, imageId, deadline, neighbours, false);
    }

    /**
     * The params of an {@code explain} request as {@link #explainParams(ExplainOptions, double[], double, String,
     * Duration, List)}, and optionally with {@code model_tile}: the same tile read at the model's resolution as
     * Predict reads it, sent as the frame after the neighbours, so that the backend's model sees exactly the tile it
     * predicted and the explained prediction equals the tile's "GENE: mean" to float precision (frame 0 stays the
     * full-resolution tile the nuclei are segmented on).
     *
     * @param options genes, method, target, samples, seed, model
     * @param box the tile's box in full-resolution pixels
     * @param mpp µm per pixel of the image sent (frame 0)
     * @param imageId the image's id (stain normalisation as in predict), or null
     * @param deadline the request's deadline
     * @param neighbours the neighbours sent (their boxes), none for the tile alone
     * @param modelTile whether the model's view of the tile is sent (frame 1 + neighbours)
     * @return the params
     */
    public static JsonObject explainParams(ExplainOptions options, double[] box, double mpp, String imageId,
            Duration deadline, List<TilePipeline.Tile> neighbours, boolean modelTile) {
        JsonObject p = new JsonObject();
        if (options.getModel() != null) {
            p.addProperty("model", options.getModel());
        }
        JsonArray genes = new JsonArray();
        for (String g : options.getGenes()) {
            genes.add(g);
        }
        p.add("genes", genes);
        p.addProperty("method", options.getMethod());
        p.addProperty("target", options.getTarget());
        p.addProperty("num_samples", options.getNumSamples());
        p.addProperty("seed", options.getSeed());
        p.addProperty("mpp", mpp);
        if (imageId != null) {
            p.addProperty("image_id", imageId);
        }
        JsonObject tile = new JsonObject();
        tile.addProperty("frame", 0);
        JsonArray b = new JsonArray();
        for (double v : box) {
            b.add(v);
        }
        tile.add("box", b);
        p.add("tile", tile);
        if (!neighbours.isEmpty()) {
            JsonArray n = new JsonArray();
            for (int i = 0; i < neighbours.size(); i++) {
                JsonObject t = new JsonObject();
                t.addProperty("frame", i + 1);
                JsonArray nb = new JsonArray();
                for (double v : neighbours.get(i).getBox()) {
                    nb.add(v);
                }
                t.add("box", nb);
                n.add(t);
            }
            p.add("neighbours", n);
        }
        if (modelTile) {
            JsonObject m = new JsonObject();
            m.addProperty("frame", 1 + neighbours.size());
            p.add("model_tile", m);
        }
        p.addProperty("deadline_ms", Math.max(1L, deadline.toMillis()));
        return p;
    }

    /**
     * Sends a {@code cells} request.
     *
     * @param client the client
     * @param params from {@link #cellsParams}
     * @param image the encoded region
     * @param listener progress, or null
     * @param cancel cancel token, or null
     * @return the result
     * @throws ServerException the backend's error
     */
    public static CellsResult cells(StimageClient client, JsonObject params, byte[] image, ProgressListener listener,
            CancelToken cancel) throws ServerException {
        Reply r = client.request("cells", params, List.of(image), listener, cancel, deadlineOf(params, client));
        return new CellsResult(r.getResult());
    }

    /**
     * Sends an {@code explain} request of a tile alone.
     *
     * @param client the client
     * @param params from {@link #explainParams(ExplainOptions, double[], double, String, Duration)}
     * @param image the encoded tile
     * @param listener progress, or null
     * @param cancel cancel token, or null
     * @return the result
     * @throws ServerException the backend's error
     */
    public static ExplainResult explain(StimageClient client, JsonObject params, byte[] image,
            ProgressListener listener, CancelToken cancel) throws ServerException {
        return explain(client, params, image, List.of(), listener, cancel);
    }

    /**
     * Sends an {@code explain} request of a tile with its neighbours.
     *
     * @param client the client
     * @param params from {@link #explainParams(ExplainOptions, double[], double, String, Duration, List)} with
     *     the same neighbours
     * @param image the encoded tile (frame 0)
     * @param neighbours the neighbours (frames 1 to m), none for the tile alone
     * @param listener progress, or null
     * @param cancel cancel token, or null
     * @return the result
     * @throws ServerException the backend's error
     * @throws IllegalArgumentException params whose neighbours are not these
     */
    public static ExplainResult explain(StimageClient client, JsonObject params, byte[] image,
            List<TilePipeline.Tile> neighbours, ProgressListener listener, CancelToken cancel) throws ServerException {
        return explain(client, params, image, neighbours, null, listener, cancel);
    }

    /**
     * Sends an {@code explain} request of a tile with its neighbours and, optionally, the model's view of the tile.
     *
     * @param client the client
     * @param params from {@link #explainParams(ExplainOptions, double[], double, String, Duration, List, boolean)}
     *     with the same neighbours, and {@code modelTile} true exactly when {@code modelView} is given
     * @param image the encoded tile (frame 0)
     * @param neighbours the neighbours (frames 1 to m), none for the tile alone
     * @param modelView the encoded tile at the model's resolution (frame m + 1), or null
     * @param listener progress, or null
     * @param cancel cancel token, or null
     * @return the result
     * @throws ServerException the backend's error
     * @throws IllegalArgumentException params that do not name these frames
     */
    public static ExplainResult explain(StimageClient client, JsonObject params, byte[] image,
            List<TilePipeline.Tile> neighbours, byte[] modelView, ProgressListener listener, CancelToken cancel)
            throws ServerException {
        Reply r = client.request("explain", params, explainFrames(params, image, neighbours, modelView), listener,
                cancel, deadlineOf(params, client));
        return new ExplainResult(r.getResult());
    }

    /** The frames of an explain request: the tile, then each neighbour, as the params number them. */
    static List<byte[]> explainFrames(JsonObject params, byte[] image, List<TilePipeline.Tile> neighbours) {
        return explainFrames(params, image, neighbours, null);
    }

    /** The frames of an explain request: the tile, each neighbour, then the model's view, as the params number them. */
    static List<byte[]> explainFrames(JsonObject params, byte[] image, List<TilePipeline.Tile> neighbours,
            byte[] modelView) {
        int named = params.has("neighbours") ? params.getAsJsonArray("neighbours").size() : 0;
        if (named != neighbours.size()) {
            throw new IllegalArgumentException("explain: the params name " + named + " neighbours but "
                    + neighbours.size() + " were given; build the params with the same neighbours");
        }
        if (params.has("model_tile") != (modelView != null)) {
            throw new IllegalArgumentException("explain: give the model's view of the tile exactly when the params "
                    + "name model_tile");
        }
        List<byte[]> frames = new ArrayList<>(2 + neighbours.size());
        frames.add(Objects.requireNonNull(image, "image"));
        for (TilePipeline.Tile t : neighbours) {
            frames.add(t.getImage());
        }
        if (modelView != null) {
            frames.add(modelView);
        }
        return frames;
    }

    /**
     * The params of a {@code predict} request for tiles the client sends, frame i for tile i, a
     * tile flagged {@link TilePipeline.Tile#isContextOnly()} sent with {@code "context_only": true}
     * (the spatial context of a model with context; not predicted, not returned).
     *
     * @param batch the tiles (at least one not context only); their images are the frames
     * @param model the model, or null for the server's default
     * @param genes genes to return, or null for all
     * @param level the predictive interval's level, or null for the server's default
     * @param imageId the image's id (stain normalisation), or null
     * @param deadline the request's deadline
     * @return the params
     */
    public static JsonObject predictParams(List<TilePipeline.Tile> batch, String model, List<String> genes,
            Double level, String imageId, Duration deadline) {
        JsonObject p = new JsonObject();
        JsonArray tiles = new JsonArray();
        for (int i = 0; i < batch.size(); i++) {
            TilePipeline.Tile t = batch.get(i);
            JsonObject tile = new JsonObject();
            tile.addProperty("frame", i);
            JsonArray box = new JsonArray();
            for (double v : t.getBox()) {
                box.add(v);
            }
            tile.add("box", box);
            if (t.getName() != null) {
                tile.addProperty("name", t.getName());
            }
            if (t.isContextOnly()) {
                tile.addProperty("context_only", true);
            }
            tiles.add(tile);
        }
        p.add("tiles", tiles);
        p.addProperty("mpp", batch.get(0).getMpp());
        if (model != null) {
            p.addProperty("model", model);
        }
        if (genes != null) {
            JsonArray g = new JsonArray();
            for (String s : genes) {
                g.add(s);
            }
            p.add("genes", g);
        }
        if (level != null) {
            p.addProperty("level", level);
        }
        if (imageId != null) {
            p.addProperty("image_id", imageId);
        }
        p.addProperty("deadline_ms", Math.max(1L, deadline.toMillis()));
        return p;
    }

    /**
     * Sends a {@code predict} request of tiles (see {@link #predictParams}) and returns the
     * GeoJSON features of the tiles predicted, in the order sent (context-only tiles return none).
     *
     * @param client the client
     * @param batch the tiles, in the order of {@link #predictParams}
     * @param params from {@link #predictParams}
     * @param listener progress, or null
     * @param cancel cancel token, or null
     * @return the features
     * @throws ServerException the backend's error, or a reply whose objects do not match the tiles predicted
     */
    public static JsonArray predictTiles(StimageClient client, List<TilePipeline.Tile> batch, JsonObject params,
            ProgressListener listener, CancelToken cancel) throws ServerException {
        List<byte[]> frames = new ArrayList<>(batch.size());
        int predicted = 0;
        for (TilePipeline.Tile t : batch) {
            frames.add(t.getImage());
            predicted += t.isContextOnly() ? 0 : 1;
        }
        Reply r = client.request("predict", params, frames, listener, cancel, deadlineOf(params, client));
        JsonObject result = r.getResult();
        JsonArray features = result != null && result.has("geojson") && result.get("geojson").isJsonObject()
                ? Features.features(result.getAsJsonObject("geojson")) : new JsonArray();
        if (features.size() != predicted) {
            throw new ServerException(ErrorCodes.INTERNAL, "the backend returned " + features.size()
                    + " objects for " + predicted + " tiles predicted");
        }
        return features;
    }

    private static Duration deadlineOf(JsonObject params, StimageClient client) {
        return params.has("deadline_ms") ? Duration.ofMillis(params.get("deadline_ms").getAsLong())
                : client.getTimeout();
    }
}
