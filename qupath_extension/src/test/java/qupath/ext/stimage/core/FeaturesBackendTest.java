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
    }
}
