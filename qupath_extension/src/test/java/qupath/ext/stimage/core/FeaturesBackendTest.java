package qupath.ext.stimage.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Test;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.ModelInfo;
import qupath.ext.stimage.client.Protocol;
import qupath.ext.stimage.client.ServerException;

import java.time.Duration;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class FeaturesBackendTest {

    private static JsonObject feature(String geometry) {
        return JsonParser.parseString("{\"type\": \"Feature\", \"geometry\": " + geometry + "}").getAsJsonObject();
    }

    @Test
    void centroids() {
        assertArrayEquals(new double[] {5, 10}, Features.centroid(feature(
                "{\"type\": \"Polygon\", \"coordinates\": [[[0,0],[10,0],[10,20],[0,20],[0,0]]]}")), 1e-12);
        // clockwise ring: same centroid
        assertArrayEquals(new double[] {5, 10}, Features.centroid(feature(
                "{\"type\": \"Polygon\", \"coordinates\": [[[0,0],[0,20],[10,20],[10,0],[0,0]]]}")), 1e-12);
        // two squares of areas 100 and 300: weighted
        double[] c = Features.centroid(feature("{\"type\": \"MultiPolygon\", \"coordinates\": ["
                + "[[[0,0],[10,0],[10,10],[0,10],[0,0]]], [[[100,0],[130,0],[130,10],[100,10],[100,0]]]]}"));
        assertEquals((5 * 100 + 115 * 300) / 400.0, c[0], 1e-9);
        assertEquals(5, c[1], 1e-9);
        assertArrayEquals(new double[] {3, 4}, Features.centroid(feature("{\"type\": \"Point\", \"coordinates\": [3, 4]}")));
        assertNull(Features.centroid(JsonParser.parseString("{\"type\": \"Feature\"}").getAsJsonObject()));
    }

    @Test
    void cellsAreKeptByTheirCentroid() throws Exception {
        JsonObject fc = TestFixtures.header("reply_cells_result").getAsJsonObject("result").getAsJsonObject("geojson");
        int all = Features.features(fc).size();
        JsonObject left = Features.filterByCentroid(fc, (x, y) -> x < 1300);
        JsonObject right = Features.filterByCentroid(fc, (x, y) -> x >= 1300);
        assertEquals(all, Features.features(left).size() + Features.features(right).size(), "each cell exactly once");
        assertTrue(Features.features(left).size() > 0 && Features.features(right).size() > 0);
        for (JsonElement f : Features.features(left)) {
            assertTrue(Features.centroid(f.getAsJsonObject())[0] < 1300);
        }
        assertEquals("FeatureCollection", left.get("type").getAsString());
    }

    @Test
    void regionAnnotationAsTheDocsDescribeIt() {
        JsonObject f = Features.regionAnnotation(0, 0, 3200, 2400, "0.1.0");
        assertTrue(StimageIds.isStimage(f.get("id").getAsString()));
        JsonObject p = f.getAsJsonObject("properties");
        assertEquals("annotation", p.get("objectType").getAsString());
        assertEquals("STImage region", p.get("name").getAsString());
        assertEquals("STImage region", p.getAsJsonObject("classification").get("name").getAsString());
        assertEquals(3, p.getAsJsonObject("classification").getAsJsonArray("color").size());
        assertTrue(p.get("isLocked").getAsBoolean());
        assertEquals("0.1.0", p.getAsJsonObject("metadata").get("stimage").getAsString());
        JsonArray ring = f.getAsJsonObject("geometry").getAsJsonArray("coordinates").get(0).getAsJsonArray();
        assertEquals(5, ring.size());
        assertEquals(ring.get(0), ring.get(4), "closed ring");
        assertArrayEquals(new double[] {1600, 1200}, Features.centroid(f), 1e-9);
    }

    @Test
    void cellsAndExplainParamsAreTheFixtureRequests() throws Exception {
        JsonObject cells = TestFixtures.header("request_cells_image").getAsJsonObject("params");
        assertEquals(cells, Backend.cellsParams(1200, 1400, 1.0, 0.69, true, Duration.ofMillis(60000)));
        JsonObject explain = TestFixtures.header("request_explain_tile").getAsJsonObject("params");
        ExplainOptions o = ExplainOptions.builder().genes(List.of("COX6C", "ERBB2")).numSamples(30).build();
        assertEquals(explain, Backend.explainParams(o, new double[] {1600, 1600, 290, 290}, 0.69, "project/image-1",
                Duration.ofMillis(60000)));
    }

    /** A neighbour as {@link ExplainNeighbours} reads it: its box and a stand-in image. */
    private static TilePipeline.Tile neighbour(double x, double y, byte mark) {
        return new TilePipeline.Tile(0, new double[] {x, y, 290, 290}, null, new byte[] {mark}, 200.0 / 224, 0.9);
    }

    @Test
    void explainParamsCarryTheNeighboursAsFramesOneToM() throws Exception {
        ExplainOptions o = ExplainOptions.builder().genes(List.of("COX6C", "ERBB2")).numSamples(30).build();
        double[] box = {1600, 1600, 290, 290};
        List<TilePipeline.Tile> n = List.of(neighbour(1310, 1600, (byte) 1), neighbour(1890, 1600, (byte) 2),
                neighbour(1600, 1890, (byte) 3));
        JsonObject p = Backend.explainParams(o, box, 0.69, "project/image-1", Duration.ofMillis(60000), n);
        // the tile alone's params (the fixture) plus the neighbours
        JsonObject alone = TestFixtures.header("request_explain_tile").getAsJsonObject("params");
        JsonObject withoutNeighbours = p.deepCopy();
        withoutNeighbours.remove("neighbours");
        assertEquals(alone, withoutNeighbours);
        JsonArray sent = p.getAsJsonArray("neighbours");
        assertEquals(3, sent.size());
        for (int i = 0; i < 3; i++) {
            JsonObject e = sent.get(i).getAsJsonObject();
            assertEquals(Set.of("frame", "box"), e.keySet());
            assertEquals(i + 1, e.get("frame").getAsInt());
            JsonArray b = e.getAsJsonArray("box");
            assertEquals(4, b.size());
            assertArrayEquals(n.get(i).getBox(), new double[] {b.get(0).getAsDouble(), b.get(1).getAsDouble(),
                b.get(2).getAsDouble(), b.get(3).getAsDouble()});
        }
        byte[] tile = {0};
        List<byte[]> frames = Backend.explainFrames(p, tile, n);
        assertEquals(1 + n.size(), frames.size(), "frame 0 the tile, then one frame per neighbour");
        for (int i = 0; i < frames.size(); i++) {
            assertArrayEquals(new byte[] {(byte) i}, frames.get(i), "frame " + i);
        }
        // no neighbours: no key, one frame (the old request)
        JsonObject none = Backend.explainParams(o, box, 0.69, "project/image-1", Duration.ofMillis(60000), List.of());
        assertEquals(alone, none);
        assertEquals(1, Backend.explainFrames(none, tile, List.of()).size());
        // params and frames that disagree are refused before anything is sent
        assertThrows(IllegalArgumentException.class, () -> Backend.explainFrames(p, tile, n.subList(0, 2)));
        assertThrows(IllegalArgumentException.class, () -> Backend.explainFrames(none, tile, n));
        // the model's view of the tile: named after the neighbours, sent last
        JsonObject withView = Backend.explainParams(o, box, 0.69, "project/image-1", Duration.ofMillis(60000), n,
                true);
        assertEquals(n.size() + 1, withView.getAsJsonObject("model_tile").get("frame").getAsInt());
        List<byte[]> all = Backend.explainFrames(withView, tile, n, new byte[] {9});
        assertEquals(n.size() + 2, all.size());
        assertArrayEquals(new byte[] {9}, all.get(all.size() - 1), "the model's view is the last frame");
        assertThrows(IllegalArgumentException.class, () -> Backend.explainFrames(withView, tile, n));
        assertThrows(IllegalArgumentException.class, () -> Backend.explainFrames(p, tile, n, new byte[] {9}));
    }

    @Test
    void explainParamsAreTheContextFixtureRequest() throws Exception {
        java.nio.file.Path f = TestFixtures.repo().resolve("tests/fixtures/protocol/request_explain_tile_context.json");
        org.junit.jupiter.api.Assumptions.assumeTrue(java.nio.file.Files.exists(f), "no fixture " + f);
        JsonObject fixture = JsonParser.parseString(java.nio.file.Files.readString(f)).getAsJsonObject();
        JsonObject params = fixture.getAsJsonObject("header").getAsJsonObject("params");
        List<String> genes = new java.util.ArrayList<>();
        for (JsonElement g : params.getAsJsonArray("genes")) {
            genes.add(g.getAsString());
        }
        ExplainOptions.Builder b = ExplainOptions.builder().genes(genes);
        if (params.has("model")) {
            b.model(params.get("model").getAsString());
        }
        // target and seed may be left to their defaults (mean, 0), which the extension always writes
        ExplainOptions o = b.method(params.get("method").getAsString())
                .target(params.has("target") ? params.get("target").getAsString() : "mean")
                .numSamples(params.get("num_samples").getAsInt())
                .seed(params.has("seed") ? params.get("seed").getAsLong() : 0).build();
        List<TilePipeline.Tile> n = new java.util.ArrayList<>();
        for (JsonElement e : params.getAsJsonArray("neighbours")) {
            JsonArray box = e.getAsJsonObject().getAsJsonArray("box");
            n.add(new TilePipeline.Tile(n.size(), new double[] {box.get(0).getAsDouble(), box.get(1).getAsDouble(),
                box.get(2).getAsDouble(), box.get(3).getAsDouble()}, null, new byte[0], 1, 1));
        }
        JsonArray tile = params.getAsJsonObject("tile").getAsJsonArray("box");
        JsonObject built = Backend.explainParams(o, new double[] {tile.get(0).getAsDouble(), tile.get(1).getAsDouble(),
            tile.get(2).getAsDouble(), tile.get(3).getAsDouble()}, params.get("mpp").getAsDouble(),
                params.has("image_id") ? params.get("image_id").getAsString() : null,
                Duration.ofMillis(params.get("deadline_ms").getAsLong()), n);
        JsonObject expected = params.deepCopy();
        if (!expected.has("target")) {
            expected.addProperty("target", "mean");
        }
        if (!expected.has("seed")) {
            expected.addProperty("seed", 0);
        }
        assertEquals(expected, built);
        assertEquals(fixture.getAsJsonArray("frames").size(), 1 + n.size(), "frame 0 the tile, one per neighbour");
    }

    @Test
    void explainResultSaysHowTheTileWasExplained() throws Exception {
        JsonObject r = TestFixtures.header("reply_explain_result").getAsJsonObject("result");
        r.remove("context_tiles");
        ExplainResult absent = new ExplainResult(r.deepCopy());
        assertNull(absent.getContextTiles());
        r.add("context_tiles", com.google.gson.JsonNull.INSTANCE);
        ExplainResult none = new ExplainResult(r.deepCopy());
        assertNull(none.getContextTiles());
        String line = String.format("COX6C predicted %.3g, LIME fit R² %.3g; ERBB2 predicted %.3g, LIME fit R² %.3g",
                5.91, 0.42, 2.14, 0.37);
        // a model without context: nothing about neighbours
        assertEquals(line, none.describe(0));
        assertEquals(line, absent.describe(0));
        r.addProperty("context_tiles", 20);
        ExplainResult twenty = new ExplainResult(r.deepCopy());
        assertEquals(20, twenty.getContextTiles());
        assertTrue(twenty.describe(500).startsWith(line), twenty.describe(500));
        assertTrue(twenty.describe(500).endsWith(" (with its 20 neighbouring tiles held fixed, as the tile was "
                + "predicted)"), twenty.describe(500));
        r.addProperty("context_tiles", 1);
        assertTrue(new ExplainResult(r.deepCopy()).describe(500).endsWith(" (with its 1 neighbouring tile held "
                + "fixed, as the tile was predicted)"));
        r.addProperty("context_tiles", 0);
        ExplainResult zero = new ExplainResult(r.deepCopy());
        assertEquals(0, zero.getContextTiles());
        assertTrue(zero.describe(500).endsWith(" (the tile alone: no neighbouring tissue tile, so this can differ "
                + "from the tile's measurement)"), zero.describe(500));
        // a context model on a backend that takes no neighbours (no context_tiles): the tile alone
        assertTrue(absent.describe(500).contains("for the tile alone") && absent.describe(500).contains("500 µm"),
                absent.describe(500));
    }

    @Test
    void resultsReadFromTheFixtures() throws Exception {
        CellsResult c = new CellsResult(TestFixtures.header("reply_cells_result").getAsJsonObject("result"));
        assertEquals(73, c.getCellCount());
        assertEquals(2, Features.features(c.getGeoJson()).size(), "the fixture keeps 2 of the 73 cells");
        assertEquals(List.of("Immune", "Stromal", "Epithelial", "Endothelial"), c.getClasses());
        assertEquals(46, c.getCounts().get("Immune"));
        assertEquals("stimage-default-cells-her2st", c.getCellModel());
        ExplainResult e = new ExplainResult(TestFixtures.header("reply_explain_result").getAsJsonObject("result"));
        assertEquals(List.of("COX6C", "ERBB2"), e.getTargets());
        assertEquals(List.of("LIME: COX6C", "LIME: ERBB2"), e.getMeasurements());
        assertEquals(List.of(5.91, 2.14), e.getPrediction());
        assertEquals(2, e.getNucleusCount());
        assertEquals(2, Features.features(e.getGeoJson()).size());
    }

    @Test
    void modelAndGenesAreCheckedAgainstHello() throws Exception {
        HelloResult hello = Protocol.fromJson(TestFixtures.header("reply_hello_result").getAsJsonObject("result"),
                HelloResult.class);
        ModelInfo def = Backend.model(hello, null);
        assertTrue(def.isDefault());
        assertEquals(def.getName(), Backend.model(hello, " " + def.getName() + " ").getName());
        ServerException e = assertThrows(ServerException.class, () -> Backend.model(hello, "lung"));
        assertEquals(ErrorCodes.UNKNOWN_MODEL, e.getCode());
        assertTrue(e.getServerMessage().contains(def.getName()));
        Backend.checkGenes(def, null, false);
        Backend.checkGenes(def, def.getGenes().subList(0, 1), false);
        ServerException g = assertThrows(ServerException.class,
                () -> Backend.checkGenes(def, List.of(def.getGenes().get(0), "NOTAGENE"), false));
        assertEquals(ErrorCodes.UNKNOWN_GENE, g.getCode());
        assertTrue(g.getServerMessage().contains("NOTAGENE"));
        Backend.checkOp(hello, "predict");
        assertEquals(ErrorCodes.UNKNOWN_OP,
                assertThrows(ServerException.class, () -> Backend.checkOp(hello, "segment")).getCode());
    }

    @Test
    void summariesReadWell() {
        RunSummary s = new RunSummary(Operation.CELLS, 2, 120, 100, 0, 4, 2_500_000_000L,
                java.util.Map.of("Immune", 120), null);
        String d = s.describe();
        assertTrue(d.startsWith("Detect cells: 120 cells under 2 annotations in 2.5 s"), d);
        assertTrue(d.contains("replaced 100 earlier STImage objects"), d);
        assertTrue(d.contains("Immune=120"), d);
        assertEquals(48.0, s.getObjectsPerSecond(), 1e-9);
        assertTrue(s.getPredictions().isEmpty());
        RunSummary e = new RunSummary(Operation.EXPLAIN, 1, 40, 0, 0, 1, 1_000_000_000L, null,
                "Tile: COX6C predicted 2.50.", java.util.Map.of("COX6C", 2.4987));
        assertEquals(java.util.Map.of("COX6C", 2.4987), e.getPredictions(), "full precision for scripts");
        assertTrue(e.describe().endsWith(" Tile: COX6C predicted 2.50."), e.describe());
    }
}
