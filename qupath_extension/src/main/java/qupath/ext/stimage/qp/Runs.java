package qupath.ext.stimage.qp;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.stimage.client.CancelToken;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.ModelInfo;
import qupath.ext.stimage.client.PredictRequest;
import qupath.ext.stimage.client.PredictResult;
import qupath.ext.stimage.client.ServerException;
import qupath.ext.stimage.client.StimageClient;
import qupath.ext.stimage.core.Backend;
import qupath.ext.stimage.core.BoxTileReader;
import qupath.ext.stimage.core.CellsOptions;
import qupath.ext.stimage.core.CellsResult;
import qupath.ext.stimage.core.ContextPlan;
import qupath.ext.stimage.core.ExplainNeighbours;
import qupath.ext.stimage.core.ExplainOptions;
import qupath.ext.stimage.core.ExplainResult;
import qupath.ext.stimage.core.Features;
import qupath.ext.stimage.core.ImageEncoding;
import qupath.ext.stimage.core.Operation;
import qupath.ext.stimage.core.PixelSize;
import qupath.ext.stimage.core.PredictOptions;
import qupath.ext.stimage.core.RegionChunks;
import qupath.ext.stimage.core.RunSummary;
import qupath.ext.stimage.core.StimageException;
import qupath.ext.stimage.core.TileGeometry;
import qupath.ext.stimage.core.TilePipeline;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.ImageServer;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.hierarchy.PathObjectHierarchy;
import qupath.lib.objects.utils.Tiler;
import qupath.lib.regions.RegionRequest;
import qupath.lib.roi.interfaces.ROI;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The three runs on a QuPath image, using only QuPath's core (no GUI): the scripting API and the
 * menu commands both call these. Each run asks the backend's hello first (protocol version,
 * model, genes: checked before any pixel is read), reads pixels through the ImageServer, and
 * changes the hierarchy only at the end, when every request has succeeded: a cancelled or
 * failed run leaves the image as it was.
 */
public final class Runs {
    private static final Logger logger = LoggerFactory.getLogger(Runs.class);

    /** The extension version, written into the metadata of region annotations. */
    public static final String VERSION = StimageClient.CLIENT_VERSION;

    private Runs() {
    }

    // -- predict -----------------------------------------------------------------------------

    /**
     * Predicts expression on tiles of the model's size inside the annotations the options name,
     * and puts the tiles (with their measurements) under those annotations, replacing the tiles
     * of an earlier run.
     *
     * @param imageData the image
     * @param options the options
     * @param progress progress, or null
     * @param cancel cancel token, or null
     * @return what was done
     * @throws StimageException a problem the user can fix (no pixel size, no tissue...)
     * @throws ServerException the backend's error, or {@code disconnected}
     * @throws IOException when pixels cannot be read
     */
    public static RunSummary predict(ImageData<BufferedImage> imageData, PredictOptions options,
            TilePipeline.Progress progress, CancelToken cancel)
            throws StimageException, ServerException, IOException {
        long t0 = System.nanoTime();
        QuPathImages.requireRgb(imageData);
        PixelSize px = QuPathImages.pixelSize(imageData, options.getMpp());
        StimageClient client = Backend.client(options.getServer(), options.getTimeoutS());
        HelloResult hello = client.hello();
        ModelInfo model = Backend.model(hello, options.getModel());
        Backend.checkGenes(model, options.getGenes(), false);
        TileGeometry geom = new TileGeometry(model.getTileUm(), model.getTilePx(), px);
        int batchSize = options.getBatchSize();
        int maxTiles = hello.getLimits() != null && hello.getLimits().getMaxTiles() > 0
                ? hello.getLimits().getMaxTiles() : Integer.MAX_VALUE;
        batchSize = Math.min(batchSize, maxTiles);

        ImageServer<BufferedImage> server = imageData.getServer();
        List<PathObject> parents = ObjectTools.parents(imageData, options.getRegion(), VERSION);
        Tiler tiler = Tiler.builder(geom.getTileWidthPx(), geom.getTileHeightPx())
                .cropTiles(false)
                .filterByCentroid(true)
                .alignCenter()
                .build();
        List<ROI> tiles = new ArrayList<>();
        List<Integer> owner = new ArrayList<>();
        int outside = 0;
        for (int p = 0; p < parents.size(); p++) {
            for (ROI r : tiler.createROIs(parents.get(p).getROI())) {
                if (TileGeometry.insideImage(r.getBoundsX(), r.getBoundsY(), r.getBoundsWidth(),
                        r.getBoundsHeight(), server.getWidth(), server.getHeight())) {
                    tiles.add(r);
                    owner.add(p);
                } else {
                    outside++;
                }
            }
        }
        if (tiles.isEmpty()) {
            throw new StimageException("Region too small", "No " + fmt(geom.getTileUm()) + " µm tile of model '"
                    + model.getName() + "' fits in the selected region (" + geom.getTileWidthPx() + " x "
                    + geom.getTileHeightPx() + " pixels at " + px + "). Draw a larger annotation.");
        }
        logger.info("STImage predict: {} tiles of {} µm ({} x {} px, read at downsample {}) in {} annotation(s) "
                + "of {}, model {}", tiles.size(), fmt(geom.getTileUm()), geom.getTileWidthPx(),
                geom.getTileHeightPx(), fmt(geom.getReadDownsample()), parents.size(), QuPathImages.name(imageData),
                model.getName());

        int[] background = QuPathImages.background(server);
        String imageId = QuPathImages.imageId(imageData);
        TilePipeline.Reader reader = new ServerTileReader(server, tiles, geom, background, options.getMinTissue());
        ContextPlan plan = null;
        if (model.getContextUm() > 0) {
            // A model with spatial context joins each tile with its neighbours among the tiles of
            // one request: each request holds a block of a region's tiles and every tile within
            // the context's reach (the margin around the annotation flagged context_only), so each
            // tile has the neighbours predict-slide --region gives it (Tile: context tiles).
            List<List<double[]>> boxes = new ArrayList<>();
            for (int i = 0; i < tiles.size(); i++) {
                while (boxes.size() <= owner.get(i)) {
                    boxes.add(new ArrayList<>());
                }
                ROI r = tiles.get(i);
                boxes.get(owner.get(i)).add(new double[] {r.getBoundsX(), r.getBoundsY(), r.getBoundsWidth(),
                    r.getBoundsHeight()});
            }
            plan = ContextPlan.build(boxes, geom.getTileUm(), model.getContextUm(), server.getWidth(),
                    server.getHeight(), maxTiles == Integer.MAX_VALUE ? 512 : maxTiles);
            final ContextPlan p = plan;
            reader = new BoxTileReader(plan.getTiles(), geom, background, options.getMinTissue(),
                    (i, x, y, w, h, ds) -> {
                        ROI parent = parents.get(p.getParent(i)).getROI();
                        return server.readRegion(RegionRequest.createInstance(server.getPath(), ds, x, y, w, h,
                                parent.getZ(), parent.getT()));
                    });
            logger.info("STImage predict: spatial context of {} µm: {}", fmt(model.getContextUm()), plan);
        }
        TilePipeline pipeline = TilePipeline.builder(plan != null ? plan.getTiles().size() : tiles.size(), reader)
                .plan(plan)
                .batchSize(batchSize)
                .minTissue(options.getMinTissue())
                .threads(2)
                .cancel(cancel)
                .progress(progress)
                .build();
        String modelName = model.getName();
        Duration deadline = Duration.ofSeconds(options.getTimeoutS());
        final boolean withContext = plan != null;
        TilePipeline.Result<TileFeatures> result = pipeline.run((batch, listener, token) -> {
            if (withContext) {
                List<Integer> index = new ArrayList<>();
                for (TilePipeline.Tile t : batch) {
                    if (!t.isContextOnly()) {
                        index.add(t.getIndex());
                    }
                }
                JsonObject params = Backend.predictParams(batch, modelName, options.getGenes(), options.getLevel(),
                        imageId, deadline);
                return new TileFeatures(index.stream().mapToInt(Integer::intValue).toArray(),
                        Backend.predictTiles(client, batch, params, listener, token));
            }
            PredictRequest.Builder b = PredictRequest.builder()
                    .mpp(batch.get(0).getMpp())
                    .imageId(imageId)
                    .model(modelName)
                    .genes(options.getGenes())
                    .deadline(deadline);
            if (options.getLevel() != null) {
                b.level(options.getLevel());
            }
            int[] index = new int[batch.size()];
            for (int i = 0; i < batch.size(); i++) {
                TilePipeline.Tile t = batch.get(i);
                double[] box = t.getBox();
                b.tile(t.getImage(), box[0], box[1], box[2], box[3], t.getName());
                index[i] = t.getIndex();
            }
            PredictResult r = client.predict(b.build(), listener, token);
            return new TileFeatures(index, Features.features(r.getGeoJson()));
        });

        // All requests succeeded: build the objects, then change the hierarchy.
        List<JsonArray> perParent = new ArrayList<>();
        for (int p = 0; p < parents.size(); p++) {
            perParent.add(new JsonArray());
        }
        for (TileFeatures tf : result.getResults()) {
            if (tf.features.size() != tf.index.length) {
                throw new ServerException(ErrorCodes.INTERNAL, "the backend returned " + tf.features.size()
                        + " objects for " + tf.index.length + " tiles");
            }
            for (int i = 0; i < tf.index.length; i++) {
                perParent.get(owner.get(tf.index[i])).add(tf.features.get(i));
            }
        }
        PathObjectHierarchy hierarchy = imageData.getHierarchy();
        int added = 0;
        int removed = 0;
        for (int p = 0; p < parents.size(); p++) {
            List<PathObject> objects = ObjectTools.parse(collection(perParent.get(p)));
            added += objects.size();
            removed += ObjectTools.replaceChildren(hierarchy, parents.get(p), Operation.PREDICT, objects);
        }
        String note = outside > 0 ? outside + " tiles reaching outside the image were left out." : null;
        if (result.getContextSent() > 0) {
            String ctx = result.getContextSent() + " tiles were sent as spatial context only (around the annotations, and between blocks of a large one).";
            note = note == null ? ctx : note + " " + ctx;
        }
        RunSummary s = new RunSummary(Operation.PREDICT, parents.size(), added, removed, result.getSkipped(),
                result.getRequests(), System.nanoTime() - t0, null, note);
        logger.info("STImage: {} ({} tiles/s)", s.describe(), String.format("%.1f", result.getTilesPerSecond()));
        return s;
    }

    /** Features returned for a batch, with the run's tile index of each. */
    private static final class TileFeatures {
        final int[] index;
        final JsonArray features;

        TileFeatures(int[] index, JsonArray features) {
            this.index = index;
            this.features = features;
        }
    }

    // -- cells -------------------------------------------------------------------------------

    /**
     * Segments and types the cells inside the annotations the options name, sending the pixels in
     * pieces with margins, and puts the cells under the annotations (replacing those of an
     * earlier run). A cell belongs to the annotation that holds its centroid.
     *
     * @param imageData the image
     * @param options the options
     * @param progress progress, or null
     * @param cancel cancel token, or null
     * @return what was done (with counts per class)
     * @throws StimageException a problem the user can fix
     * @throws ServerException the backend's error
     * @throws IOException when pixels cannot be read
     */
    public static RunSummary detectCells(ImageData<BufferedImage> imageData, CellsOptions options,
            TilePipeline.Progress progress, CancelToken cancel)
            throws StimageException, ServerException, IOException {
        long t0 = System.nanoTime();
        QuPathImages.requireRgb(imageData);
        PixelSize px = QuPathImages.pixelSize(imageData, options.getMpp());
        StimageClient client = Backend.client(options.getServer(), options.getTimeoutS());
        HelloResult hello = client.hello();
        Backend.checkOp(hello, Operation.CELLS.getOp());
        int maxSide = hello.getLimits() != null && hello.getLimits().getMaxTilePx() > 0
                ? hello.getLimits().getMaxTilePx() : 4096;
        long maxBytes = hello.getLimits() != null ? hello.getLimits().getMaxFrameBytes() : 0;
        ImageServer<BufferedImage> server = imageData.getServer();
        List<PathObject> parents = ObjectTools.parents(imageData, options.getRegion(), VERSION);
        List<List<RegionChunks.Chunk>> chunks = new ArrayList<>();
        int total = 0;
        for (PathObject p : parents) {
            ROI r = p.getROI();
            int x0 = (int) Math.floor(r.getBoundsX());
            int y0 = (int) Math.floor(r.getBoundsY());
            int x1 = (int) Math.ceil(r.getBoundsX() + r.getBoundsWidth());
            int y1 = (int) Math.ceil(r.getBoundsY() + r.getBoundsHeight());
            List<RegionChunks.Chunk> c = RegionChunks.split(x0, y0, x1 - x0, y1 - y0, options.getChunkPx(),
                    RegionChunks.DEFAULT_MARGIN_PX, server.getWidth(), server.getHeight());
            chunks.add(c);
            total += c.size();
        }
        Duration deadline = Duration.ofSeconds(options.getTimeoutS());
        List<List<PathObject>> perParent = new ArrayList<>();
        Map<String, Integer> counts = new LinkedHashMap<>();
        int done = 0;
        CancelToken token = cancel != null ? cancel : new CancelToken();
        for (int p = 0; p < parents.size(); p++) {
            ROI roi = parents.get(p).getROI();
            JsonArray kept = new JsonArray();
            for (RegionChunks.Chunk c : chunks.get(p)) {
                if (token.isCancelled()) {
                    throw new ServerException(ErrorCodes.CANCELLED, "cancelled by the user");
                }
                double ds = RegionChunks.downsampleToFit(c.getReadWidth(), c.getReadHeight(), maxSide);
                RegionRequest req = RegionRequest.createInstance(server.getPath(), ds, c.getReadX(), c.getReadY(),
                        c.getReadWidth(), c.getReadHeight(), roi.getZ(), roi.getT());
                BufferedImage img = server.readRegion(req);
                done++;
                if (img == null) {
                    continue;
                }
                byte[] data = ImageEncoding.pngOrJpeg(img, maxBytes);
                double mpp = px.getWidthUm() * c.getReadWidth() / img.getWidth();
                double actualDs = (double) c.getReadWidth() / img.getWidth();
                final int chunkIndex = done;
                final int chunkTotal = total;
                CellsResult r = Backend.cells(client, Backend.cellsParams(c.getReadX(), c.getReadY(), actualDs, mpp,
                        options.isClassify(), deadline), data, (stage, d, t) -> {
                            if (progress != null) {
                                progress.update(chunkIndex - 1, chunkTotal, "Detecting cells: piece " + chunkIndex
                                        + " of " + chunkTotal + " (segmenting " + d + "/" + t + ")");
                            }
                        }, token);
                JsonObject mine = Features.filterByCentroid(r.getGeoJson(),
                        (x, y) -> c.owns(x, y) && roi.contains(x, y));
                for (JsonElement f : Features.features(mine)) {
                    kept.add(f);
                }
                if (progress != null) {
                    progress.update(done, total, "Detecting cells: " + done + " of " + total + " pieces");
                }
            }
            List<PathObject> cells = ObjectTools.parse(collection(kept));
            for (PathObject cell : cells) {
                String cls = cell.getPathClass() == null ? "Unclassified" : cell.getPathClass().toString();
                counts.merge(cls, 1, Integer::sum);
            }
            perParent.add(cells);
        }
        PathObjectHierarchy hierarchy = imageData.getHierarchy();
        int added = 0;
        int removed = 0;
        for (int p = 0; p < parents.size(); p++) {
            added += perParent.get(p).size();
            removed += ObjectTools.replaceChildren(hierarchy, parents.get(p), Operation.CELLS, perParent.get(p));
        }
        RunSummary s = new RunSummary(Operation.CELLS, parents.size(), added, removed, 0, total,
                System.nanoTime() - t0, counts, null);
        logger.info("STImage: {}", s.describe());
        return s;
    }

    // -- explain -----------------------------------------------------------------------------

    /**
     * Explains the selected tiles: each must be one model tile (e.g. made by predict); its
     * nuclei come back with a score per gene and are put under the tile, replacing the nuclei of
     * an earlier explanation. For a model with spatial context each tile is sent with its
     * neighbouring tissue tiles ({@link ExplainNeighbours}), which the backend holds fixed: the
     * prediction explained is the tile's prediction with context, the "gene: mean" Predict gave it.
     *
     * @param imageData the image
     * @param options the options (genes required)
     * @param progress progress, or null
     * @param cancel cancel token, or null
     * @return what was done
     * @throws StimageException nothing suitable selected, or another problem the user can fix
     * @throws ServerException the backend's error (e.g. {@code no_nuclei})
     * @throws IOException when pixels cannot be read
     */
    public static RunSummary explain(ImageData<BufferedImage> imageData, ExplainOptions options,
            TilePipeline.Progress progress, CancelToken cancel)
            throws StimageException, ServerException, IOException {
        long t0 = System.nanoTime();
        QuPathImages.requireRgb(imageData);
        PixelSize px = QuPathImages.pixelSize(imageData, options.getMpp());
        StimageClient client = Backend.client(options.getServer(), options.getTimeoutS());
        HelloResult hello = client.hello();
        Backend.checkOp(hello, Operation.EXPLAIN.getOp());
        ModelInfo model = Backend.model(hello, options.getModel());
        Backend.checkGenes(model, options.getGenes(), "p_high".equals(options.getTarget()));
        TileGeometry geom = new TileGeometry(model.getTileUm(), model.getTilePx(), px);
        double tolerance = hello.getLimits() != null && hello.getLimits().getScaleTolerance() > 0
                ? hello.getLimits().getScaleTolerance() : 0.05;
        int maxSide = hello.getLimits() != null && hello.getLimits().getMaxTilePx() > 0
                ? hello.getLimits().getMaxTilePx() : 4096;
        int maxTiles = hello.getLimits() != null && hello.getLimits().getMaxTiles() > 0
                ? hello.getLimits().getMaxTiles() : 512;

        List<PathObject> selected = new ArrayList<>();
        List<String> wrongSize = new ArrayList<>();
        for (PathObject p : imageData.getHierarchy().getSelectionModel().getSelectedObjects()) {
            ROI r = p.getROI();
            if (r == null || !(p.isTile() || p.isDetection()) || p.isCell()) {
                continue;
            }
            if (geom.isTileBox(r.getBoundsWidth(), r.getBoundsHeight(), tolerance)) {
                selected.add(p);
            } else {
                wrongSize.add(fmt(r.getBoundsWidth() * px.getWidthUm()) + " µm");
            }
        }
        if (selected.isEmpty()) {
            throw new StimageException("Select a tile", "Select a tile made by Predict expression (a "
                    + fmt(geom.getTileUm()) + " µm square of model '" + model.getName() + "'), then explain it."
                    + (wrongSize.isEmpty() ? "" : " The selected objects are " + wrongSize + " wide."));
        }
        String imageId = QuPathImages.imageId(imageData);
        ImageServer<BufferedImage> server = imageData.getServer();
        int[] background = QuPathImages.background(server);
        Duration deadline = Duration.ofSeconds(options.getTimeoutS());
        CancelToken token = cancel != null ? cancel : new CancelToken();
        List<List<PathObject>> nuclei = new ArrayList<>();
        List<String> notes = new ArrayList<>();
        Map<String, Double> prediction = new LinkedHashMap<>();
        for (int i = 0; i < selected.size(); i++) {
            if (token.isCancelled()) {
                throw new ServerException(ErrorCodes.CANCELLED, "cancelled by the user");
            }
            ROI r = selected.get(i).getROI();
            int x = (int) Math.round(r.getBoundsX());
            int y = (int) Math.round(r.getBoundsY());
            int w = (int) Math.round(r.getBoundsWidth());
            int h = (int) Math.round(r.getBoundsHeight());
            // full resolution: nuclei are segmented on the pixels sent
            double ds = RegionChunks.downsampleToFit(w, h, maxSide);
            BufferedImage img = server.readRegion(RegionRequest.createInstance(server.getPath(), ds, x, y, w, h,
                    r.getZ(), r.getT()));
            if (img == null) {
                throw new StimageException("No pixels", "The image has no pixels under the selected tile.");
            }
            final int k = i + 1;
            final int n = selected.size();
            List<TilePipeline.Tile> neighbours = List.of();
            if (model.getContextUm() > 0) {
                // the tissue tiles of the tile's grid within the context's reach, read and tested as
                // Predict reads a region's margin: the backend holds their features fixed, so the
                // prediction explained is the tile's "gene: mean"
                if (progress != null) {
                    progress.update(k - 1, n, "Explaining tile " + k + " of " + n + ": reading its neighbours");
                }
                neighbours = ExplainNeighbours.read(new double[] {x, y, w, h}, geom, model.getContextUm(),
                        server.getWidth(), server.getHeight(), maxTiles, background, options.getMinTissue(),
                        (j, bx, by, bw, bh, bds) -> server.readRegion(RegionRequest.createInstance(server.getPath(),
                                bds, bx, by, bw, bh, r.getZ(), r.getT())), token);
                logger.info("STImage explain: tile at {}, {} with {} neighbouring tissue tiles (spatial context of "
                        + "{} µm)", x, y, neighbours.size(), fmt(model.getContextUm()));
            }
            // the tile as Predict read it (the model's resolution): the model explains exactly the tile it
            // predicted, so the explained prediction is the tile's "gene: mean"
            TilePipeline.Tile view = new BoxTileReader(List.of(new double[] {x, y, w, h}), geom, background, 0.0,
                    (j, bx, by, bw, bh, bds) -> server.readRegion(RegionRequest.createInstance(server.getPath(), bds,
                            bx, by, bw, bh, r.getZ(), r.getT()))).read(0);
            byte[] modelView = view != null ? view.getImage() : null;
            ExplainResult res = Backend.explain(client, Backend.explainParams(options, new double[] {x, y, w, h},
                    geom.sentMpp(w, img.getWidth()), imageId, deadline, neighbours, modelView != null),
                    ImageEncoding.png(img), neighbours, modelView, (stage, d, t) -> {
                        if (progress != null) {
                            progress.update(k - 1, n, "Explaining tile " + k + " of " + n + ": " + stage + " " + d
                                    + "/" + t);
                        }
                    }, token);
            nuclei.add(ObjectTools.parse(res.getGeoJson()));
            notes.add(res.describe(model.getContextUm()));
            prediction.clear();
            for (int g = 0; g < res.getTargets().size() && g < res.getPrediction().size(); g++) {
                if (res.getPrediction().get(g) != null) {
                    prediction.put(res.getTargets().get(g), res.getPrediction().get(g));
                }
            }
        }
        PathObjectHierarchy hierarchy = imageData.getHierarchy();
        int added = 0;
        int removed = 0;
        for (int i = 0; i < selected.size(); i++) {
            added += nuclei.get(i).size();
            removed += ObjectTools.replaceChildren(hierarchy, selected.get(i), Operation.EXPLAIN, nuclei.get(i));
        }
        RunSummary s = new RunSummary(Operation.EXPLAIN, selected.size(), added, removed, 0, selected.size(),
                System.nanoTime() - t0, null, selected.size() == 1 ? "Tile: " + notes.get(0) + "." : null,
                selected.size() == 1 ? prediction : null);
        logger.info("STImage: {}", s.describe());
        return s;
    }

    private static JsonObject collection(JsonArray features) {
        JsonObject fc = new JsonObject();
        fc.addProperty("type", "FeatureCollection");
        fc.add("features", features);
        return fc;
    }

    private static String fmt(double v) {
        return v == Math.rint(v) ? String.valueOf((long) v) : String.format("%.3g", v);
    }
}
