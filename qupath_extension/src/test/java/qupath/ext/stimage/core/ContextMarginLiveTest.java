package qupath.ext.stimage.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.LiveServer;
import qupath.ext.stimage.client.ModelInfo;
import qupath.ext.stimage.client.PredictRequest;
import qupath.ext.stimage.client.PredictResult;
import qupath.ext.stimage.client.StimageClient;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.Graphics2D;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The margin of a context model's region against the real server (the bundled default model:
 * 200 µm tiles, rings of 300 and 500 µm; skipped without the venv, with
 * {@code -Dstimage.live=false}, or for a model without context). A synthetic H&amp;E-like image
 * of 9 x 8 tiles, tissue everywhere but two glass columns (5 and 8), tiles aligned with the
 * image so the extension's tissue test and the backend's tissue mask agree; the region is the
 * 4 x 4 tiles at the image's left edge, rows 2-5. Its tiles are predicted the way the
 * extension sends them (a {@link ContextPlan}: the margin flagged {@code context_only}), in one
 * request and in blocks of 2 x 2 tiles with their own margins, and without the margin (the
 * region's tiles alone, what the extension did before); and by the Python path: a slide request
 * for the same region, which tiles it on the same grid and reads the margin as
 * {@code stimage predict-slide --region} does. "Tile: context tiles" must be what the full grid
 * gives each tile, the same on every path with the margin, and fewer without it at the region's
 * edge. A region tile explained with its neighbours ({@link ExplainNeighbours}) has the prediction
 * the margin gave it.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ContextMarginLiveTest {
    private static final int COLS = 9;
    private static final int ROWS = 8;
    private static final int GLASS_A = 5;
    private static final int GLASS_B = 8;
    private static final int R0 = 2;
    private static final int R1 = 6;
    private static final int C0 = 0;
    private static final int C1 = 4;

    private Path dir;
    private LiveServer server;
    private StimageClient client;
    private ModelInfo model;
    private int side;
    private double mpp;
    private BufferedImage image;
    private Path imageFile;

    @BeforeAll
    void startServer() throws Exception {
        LiveServer.program(); // skips without the venv or with live tests off
        dir = Files.createTempDirectory("stimage-context-");
        server = new LiveServer(dir.resolve("serve.log"), List.of("--allow-root", dir.toString())).start();
        client = new StimageClient(server.address(), Duration.ofSeconds(300), Duration.ofSeconds(5));
        HelloResult hello = server.await(client::hello);
        model = hello.getDefaultModel();
        assumeTrue(model.getContextUm() > 0, "the served model has no spatial context");
        // the model's own resolution: a tile is tile_px pixels, read at downsample 1
        mpp = model.getTileUm() / model.getTilePx();
        side = model.getTilePx();
        image = synthetic();
        imageFile = dir.resolve("synthetic.png");
        ImageIO.write(image, "png", imageFile.toFile());
    }

    @AfterAll
    void stopServer() throws Exception {
        if (client != null) {
            client.close();
        }
        if (server != null) {
            server.close();
        }
        if (dir != null) {
            try (var files = Files.walk(dir)) {
                for (Path p : files.sorted(java.util.Comparator.reverseOrder()).toList()) {
                    Files.deleteIfExists(p);
                }
            }
        }
    }

    /** Pink tissue with purple nuclei, tile-aligned glass columns {@link #GLASS_A} and {@link #GLASS_B}. */
    private BufferedImage synthetic() {
        BufferedImage img = new BufferedImage(COLS * side, ROWS * side, BufferedImage.TYPE_INT_RGB);
        Random rnd = new Random(11);
        for (int y = 0; y < img.getHeight(); y++) {
            for (int x = 0; x < img.getWidth(); x++) {
                int col = x / side;
                if (col == GLASS_A || col == GLASS_B) {
                    img.setRGB(x, y, new Color(242 - rnd.nextInt(3), 240 - rnd.nextInt(3), 244 - rnd.nextInt(3))
                            .getRGB());
                } else {
                    int n = rnd.nextInt(20);
                    img.setRGB(x, y, new Color(215 - n, 135 - n, 180 - n).getRGB());
                }
            }
        }
        Graphics2D g = img.createGraphics();
        g.setColor(new Color(105, 55, 140));
        for (int i = 0; i < COLS * ROWS * 60; i++) {
            int x = rnd.nextInt(img.getWidth());
            int y = rnd.nextInt(img.getHeight());
            int col = x / side;
            int r = 3 + rnd.nextInt(5);
            if (col != GLASS_A && col != GLASS_B && (x - r) / side == col && (x + r) / side == col) {
                g.fillOval(x - r, y - r, 2 * r, 2 * r);
            }
        }
        g.dispose();
        return img;
    }

    private List<double[]> regionTiles() {
        List<double[]> out = new ArrayList<>();
        for (int r = R0; r < R1; r++) {
            for (int c = C0; c < C1; c++) {
                out.add(new double[] {c * side, r * side, side, side});
            }
        }
        return out;
    }

    private static String key(double[] box) {
        return Math.round(box[0]) + "," + Math.round(box[1]);
    }

    private static String key(JsonObject feature) {
        JsonArray ring = feature.getAsJsonObject("geometry").getAsJsonArray("coordinates").get(0).getAsJsonArray();
        double x = Double.MAX_VALUE;
        double y = Double.MAX_VALUE;
        for (JsonElement p : ring) {
            x = Math.min(x, p.getAsJsonArray().get(0).getAsDouble());
            y = Math.min(y, p.getAsJsonArray().get(1).getAsDouble());
        }
        return Math.round(x) + "," + Math.round(y);
    }

    private static double measurement(JsonObject feature, String name) {
        return feature.getAsJsonObject("properties").getAsJsonObject("measurements").get(name).getAsDouble();
    }

    /** Tissue tiles of the image within the reach of a tile (the full grid's neighbours). */
    private int expectedOnGrid(double[] box, boolean regionOnly) {
        int n = 0;
        int tc = (int) Math.round(box[0] / side);
        int tr = (int) Math.round(box[1] / side);
        for (int r = 0; r < ROWS; r++) {
            for (int c = 0; c < COLS; c++) {
                boolean tissue = c != GLASS_A && c != GLASS_B;
                boolean inRegion = r >= R0 && r < R1 && c >= C0 && c < C1;
                double d = Math.hypot(r - tr, c - tc) * model.getTileUm();
                if ((r != tr || c != tc) && tissue && (!regionOnly || inRegion)
                        && d <= model.getContextUm() * (1 + 1e-9)) {
                    n++;
                }
            }
        }
        return n;
    }

    /** Runs the extension's pipeline: with a plan of the given max_tiles, or (null) the region's tiles alone. */
    private Map<String, JsonObject> runExtension(Integer maxTiles, String imageId) throws Exception {
        TileGeometry geom = new TileGeometry(model.getTileUm(), model.getTilePx(),
                PixelSize.resolve("synthetic", true, mpp, mpp, null));
        int[] background = Tissue.background(image);
        ContextPlan plan = maxTiles == null ? null : ContextPlan.build(List.of(regionTiles()), model.getTileUm(),
                model.getContextUm(), image.getWidth(), image.getHeight(), maxTiles);
        List<double[]> boxes = plan != null ? plan.getTiles() : regionTiles();
        BoxTileReader reader = new BoxTileReader(boxes, geom, background, 0.25, (i, x, y, w, h, ds) -> {
            assertEquals(1.0, ds, 1e-9);
            return image.getSubimage(x, y, w, h);
        });
        List<String> genes = model.getGenes().subList(0, 1);
        TilePipeline.Result<JsonArray> r = TilePipeline.builder(boxes.size(), reader).plan(plan).batchSize(512)
                .minTissue(0.25).build().run((batch, listener, token) -> Backend.predictTiles(client, batch,
                        Backend.predictParams(batch, null, genes, null, imageId, Duration.ofSeconds(300)), listener,
                        token));
        Map<String, JsonObject> out = new TreeMap<>();
        for (JsonArray fs : r.getResults()) {
            for (JsonElement f : fs) {
                String k = key(f.getAsJsonObject());
                assertTrue(out.put(k, f.getAsJsonObject()) == null, "tile " + k + " returned twice");
            }
        }
        System.out.printf("context margin: %s: %d requests, %d tiles predicted, %d context tiles sent%s%n",
                maxTiles == null ? "region alone" : "max_tiles " + maxTiles, r.getRequests(), r.getSent(),
                r.getContextSent(), plan == null ? "" : " (" + plan + ")");
        return out;
    }

    @Test
    void edgeTilesHaveTheNeighboursOfPredictSlideRegionOnlyWithTheMargin() throws Exception {
        String cname = "Tile: context tiles";
        Map<String, JsonObject> margin = runExtension(512, "synthetic-context");
        Map<String, JsonObject> chunked = runExtension(40, "synthetic-context");
        Map<String, JsonObject> alone = runExtension(null, "synthetic-context");

        double[] region = {C0 * side, R0 * side, (C1 - C0) * side, (R1 - R0) * side};
        PredictResult py = client.predict(PredictRequest.builder().slide(imageFile.toString(), region, mpp)
                .genes(model.getGenes().subList(0, 1)).deadline(Duration.ofSeconds(300)).build(), null, null);
        Map<String, JsonObject> slide = new TreeMap<>();
        for (JsonElement f : py.getGeoJson().getAsJsonArray("features")) {
            slide.put(key(f.getAsJsonObject()), f.getAsJsonObject());
        }

        assertEquals(16, margin.size());
        assertEquals(margin.keySet(), chunked.keySet());
        assertEquals(margin.keySet(), alone.keySet());
        assertEquals(margin.keySet(), slide.keySet(), "the slide request tiles the region on the same grid");
        int fewer = 0;
        String gene = model.getGenes().get(0) + ": mean";
        double diffMargin = 0;
        double diffAlone = 0;
        StringBuilder table = new StringBuilder();
        for (double[] b : regionTiles()) {
            String k = key(b);
            int full = expectedOnGrid(b, false);
            int regionOnly = expectedOnGrid(b, true);
            int m = (int) measurement(margin.get(k), cname);
            int c = (int) measurement(chunked.get(k), cname);
            int a = (int) measurement(alone.get(k), cname);
            int p = (int) measurement(slide.get(k), cname);
            table.append(String.format("  tile %-10s full grid %2d | margin %2d | blocks %2d | python %2d | alone %2d%n",
                    k, full, m, c, p, a));
            assertEquals(full, p, "the Python path reads the margin: tile " + k);
            assertEquals(full, m, "with the margin: tile " + k);
            assertEquals(full, c, "in blocks with their own margins: tile " + k);
            assertEquals(regionOnly, a, "the region alone: tile " + k);
            fewer += a < full ? 1 : 0;
            double py0 = measurement(slide.get(k), gene);
            diffMargin += Math.abs(measurement(margin.get(k), gene) - py0);
            diffAlone += Math.abs(measurement(alone.get(k), gene) - py0);
        }
        System.out.print("context margin: \"Tile: context tiles\" per tile\n" + table);
        System.out.printf("context margin: mean |%s - Python's| over the 16 tiles: %.4f with the margin, %.4f "
                + "without%n", gene, diffMargin / 16, diffAlone / 16);
        assertEquals(16, fewer, "without the margin every tile lacked neighbours: the region is 4 tiles high and wide, the reach 2.5 tiles");
    }

    @Test
    void anExplainedTileWithItsNeighboursIsItsPrediction() throws Exception {
        String imageId = "synthetic-explain";
        Map<String, JsonObject> predicted = runExtension(512, imageId);
        String gene = model.getGenes().get(0);
        // a region tile at the image's left edge, by the glass column: neighbours in and outside the region
        double[] box = {0, 3 * side, side, side};
        TileGeometry geom = new TileGeometry(model.getTileUm(), model.getTilePx(),
                PixelSize.resolve("synthetic", true, mpp, mpp, null));
        List<TilePipeline.Tile> neighbours = ExplainNeighbours.read(box, geom, model.getContextUm(), image.getWidth(),
                image.getHeight(), 512, Tissue.background(image), 0.25,
                (i, x, y, w, h, ds) -> image.getSubimage(x, y, w, h), null);
        assertEquals(expectedOnGrid(box, false), neighbours.size(), "the tissue tiles within reach");
        ExplainOptions o = ExplainOptions.builder().genes(List.of(gene)).numSamples(10).build();
        byte[] tile = ImageEncoding.png(image.getSubimage(0, 3 * side, side, side));
        Duration deadline = Duration.ofSeconds(300);
        ExplainResult with = Backend.explain(client, Backend.explainParams(o, box, mpp, imageId, deadline, neighbours),
                tile, neighbours, null, null);
        ExplainResult alone = Backend.explain(client, Backend.explainParams(o, box, mpp, imageId, deadline), tile,
                null, null);
        JsonObject f = predicted.get(key(box));
        double mean = measurement(f, gene + ": mean");
        System.out.printf("explain with context: %s: %s with %d neighbours %.6f, alone %.6f; the tile's \"%s: mean\" "
                + "%.6f (Tile: context tiles %d)%n", key(box), gene, neighbours.size(), with.getPrediction().get(0),
                alone.getPrediction().get(0), gene, mean, (int) measurement(f, "Tile: context tiles"));
        assertEquals(neighbours.size(), with.getContextTiles(), "every neighbour sent held fixed");
        assertEquals(0, alone.getContextTiles(), "no neighbours: the tile alone");
        assertEquals(neighbours.size(), (int) measurement(f, "Tile: context tiles"), "the neighbours predict gave it");
        assertEquals(mean, with.getPrediction().get(0), 1e-3 * Math.abs(mean) + 1e-6,
                "with its neighbours the explained prediction is the tile's prediction with context");
        assertTrue(with.describe(model.getContextUm()).contains("with its " + neighbours.size()
                + " neighbouring tiles held fixed"), with.describe(model.getContextUm()));
    }
}
