package qupath.ext.stimage.client;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Every message of tests/fixtures/protocol parses into the DTOs and re-encodes to the same JSON. */
class ProtocolFixturesTest {

    @TestFactory
    List<DynamicTest> everyFixtureRoundTrips() throws IOException {
        List<Path> files = Fixtures.all();
        assertTrue(files.size() >= 30, "expected the ~31 protocol fixtures in " + Fixtures.dir() + ", found "
                + files.size());
        List<DynamicTest> tests = new ArrayList<>();
        for (Path f : files) {
            tests.add(DynamicTest.dynamicTest(f.getFileName().toString(), () -> roundTrip(Fixtures.load(f))));
        }
        return tests;
    }

    @Test
    void fixturesCoverEveryKindOpAndErrorCode() throws IOException {
        Set<String> seen = new HashSet<>();
        for (Path f : Fixtures.all()) {
            JsonObject h = Fixtures.load(f).getAsJsonObject("header");
            if (h.has("op")) {
                seen.add("op:" + h.get("op").getAsString());
            }
            if (h.has("kind")) {
                seen.add("kind:" + h.get("kind").getAsString());
            }
            if (h.has("code")) {
                seen.add(h.get("code").getAsString());
            }
        }
        for (String s : List.of("op:hello", "op:ping", "op:predict", "op:cancel", "kind:progress",
                "kind:heartbeat", "kind:result", "kind:error", ErrorCodes.UNKNOWN_GENE, ErrorCodes.CANCELLED,
                ErrorCodes.UNSUPPORTED_PROTOCOL, ErrorCodes.WRONG_SCALE, ErrorCodes.UNAVAILABLE)) {
            assertTrue(seen.contains(s), "no fixture has " + s);
        }
    }

    /** Decode with the DTOs, encode again, compare as JSON (key order ignored) and as bytes on the wire. */
    private static void roundTrip(JsonObject fixture) throws Exception {
        JsonObject header = fixture.getAsJsonObject("header");
        List<byte[]> frames = Fixtures.frames(fixture);
        // through the wire encoding first: header frame bytes, then decode
        Protocol.Message wire = Protocol.decodeMessage(new Protocol.Message(header, frames).toFrames());
        assertEquals(header, wire.getHeader());
        JsonObject again;
        List<byte[]> framesAgain = frames;
        if ("request".equals(fixture.get("direction").getAsString())) {
            RequestHeader rh = Protocol.fromJson(wire.getHeader(), RequestHeader.class);
            assertEquals(Protocol.VERSION, rh.getProtocol());
            again = Protocol.toJsonTree(Protocol.request(rh.getId(), rh.getOp(), typedParams(rh)));
        } else {
            ReplyHeader h = Protocol.decodeReplyHeader(wire.getHeader());
            switch (h.getKind()) {
                case Protocol.KIND_RESULT: {
                    Object typed = typedResult(h, wire.getFrames());
                    if (typed instanceof PredictResult && ((PredictResult) typed).getTable() != null) {
                        Protocol.Message m = Protocol.tableReply(h.getId(), (PredictResult) typed);
                        again = m.getHeader();
                        framesAgain = m.getFrames();
                    } else {
                        again = Protocol.toJsonTree(ReplyHeader.result(h.getId(), h.getOp(), Protocol.toJsonTree(typed)));
                    }
                    break;
                }
                case Protocol.KIND_ERROR: {
                    ServerException e = h.toException();
                    assertEquals(header.get("code").getAsString(), e.getCode());
                    assertEquals(header.get("message").getAsString(), e.getServerMessage());
                    assertEquals(header.has("details") ? header.getAsJsonObject("details") : new JsonObject(),
                            e.getDetails());
                    again = Protocol.toJsonTree(h);
                    break;
                }
                default:
                    again = Protocol.toJsonTree(h);
            }
        }
        assertEquals(header, again, "re-encoded header differs from the fixture");
        assertEquals(Protocol.decodeHeader(Protocol.encodeHeader(again)), header);
        assertEquals(frames.size(), framesAgain.size());
        for (int i = 0; i < frames.size(); i++) {
            assertArrayEquals(frames.get(i), framesAgain.get(i), "frame " + i);
        }
    }

    private static Object typedParams(RequestHeader rh) throws ServerException {
        JsonObject p = rh.getParams();
        switch (rh.getOp()) {
            case "hello":
                return Protocol.fromJson(p, HelloParams.class);
            case "cancel":
                return Protocol.fromJson(p, CancelParams.class);
            case "predict":
                return Protocol.fromJson(p, PredictParams.class);
            case "ping":
                assertEquals(0, p.size(), "ping has no params");
                return null;
            default:
                // ops without typed DTOs here (cells, explain): the envelope round-trips, params as JSON
                return p;
        }
    }

    private static Object typedResult(ReplyHeader h, List<byte[]> frames) throws ServerException {
        switch (h.getOp()) {
            case "hello":
                return Protocol.fromJson(h.getResult(), HelloResult.class);
            case "ping":
                return Protocol.fromJson(h.getResult(), PingResult.class);
            case "cancel":
                return Protocol.fromJson(h.getResult(), CancelResult.class);
            case "predict":
                return Protocol.attachTable(Protocol.fromJson(h.getResult(), PredictResult.class), frames);
            default:
                // ops without typed DTOs here (cells, explain): the envelope round-trips, result as JSON
                return h.getResult();
        }
    }

    // -- particular messages -----------------------------------------------------------------

    @Test
    void helloResultFields() throws Exception {
        JsonObject h = Fixtures.load("reply_hello_result").getAsJsonObject("header");
        HelloResult hello = Protocol.fromJson(h.getAsJsonObject("result"), HelloResult.class);
        Protocol.checkHello(hello);
        assertEquals("stimage", hello.getServer());
        ModelInfo m = hello.getDefaultModel();
        assertEquals("her2st", m.getName());
        assertTrue(m.isDefault());
        assertEquals(List.of("COX6C", "ERBB2"), m.getGenes());
        assertEquals(200.0, m.getTileUm());
        assertEquals(224, m.getTilePx());
        assertEquals(200.0 / 224, m.getNativeMpp(), 1e-12);
        assertEquals("vahadane", m.getStain());
        assertEquals(500.0, m.getContextUm()); // spatial context: tiles sent together
        assertEquals(512, hello.getLimits().getMaxTiles());
        assertEquals(8388608L, hello.getLimits().getMaxFrameBytes());
        assertEquals(1.0, hello.getLimits().getHeartbeatS());
        assertEquals(0.05, hello.getLimits().getScaleTolerance());
        assertFalse(hello.isSlidePaths());
    }

    @Test
    void helloOfAnotherProtocolIsRefused() throws Exception {
        JsonObject r = Fixtures.load("reply_hello_result").getAsJsonObject("header").getAsJsonObject("result");
        r.addProperty("protocol", 2);
        JsonArray two = new JsonArray();
        two.add(2);
        r.add("protocols", two);
        HelloResult hello = Protocol.fromJson(r, HelloResult.class);
        ServerException e = assertThrows(ServerException.class, () -> Protocol.checkHello(hello));
        assertEquals(ErrorCodes.UNSUPPORTED_PROTOCOL, e.getCode());
        assertTrue(e.getServerMessage().contains("[2]") && e.getServerMessage().contains("client 1"),
                e.getServerMessage());
    }

    @Test
    void modelWithoutStainKeepsTheNull() throws Exception {
        JsonObject r = Fixtures.load("reply_hello_result").getAsJsonObject("header").getAsJsonObject("result");
        r.getAsJsonArray("models").get(0).getAsJsonObject().add("stain", com.google.gson.JsonNull.INSTANCE);
        HelloResult hello = Protocol.fromJson(r, HelloResult.class);
        assertNull(hello.getDefaultModel().getStain());
        assertEquals(r, Protocol.toJsonTree(hello));
    }

    @Test
    void tableResultValues() throws Exception {
        JsonObject fx = Fixtures.load("reply_predict_result_table");
        ReplyHeader h = Protocol.decodeReplyHeader(fx.getAsJsonObject("header"));
        PredictResult r = Protocol.attachTable(Protocol.fromJson(h.getResult(), PredictResult.class),
                Fixtures.frames(fx));
        assertEquals(PredictRequest.FORMAT_TABLE, r.getFormat());
        assertEquals(List.of("COX6C: mean", "ERBB2: mean"), r.getColumns());
        float[][] t = r.getTable();
        assertEquals(1, t.length);
        assertEquals(1.25f, t[0][0]);
        assertTrue(Float.isNaN(t[0][1]));
        assertEquals(1.25f, r.getColumn("COX6C: mean")[0]);
        assertArrayEquals(new double[] {10000, 20000, 290, 290}, r.getBoxes().get(0));
        assertNull(r.getNames().get(0));
        assertEquals(40000L, r.getSlide().getWidth());
        assertThrows(IllegalArgumentException.class, () -> r.getColumn("XYZ: mean"));
    }

    @Test
    void tableFrameOfWrongSizeIsRefused() throws Exception {
        JsonObject fx = Fixtures.load("reply_predict_result_table");
        PredictResult r = Protocol.fromJson(fx.getAsJsonObject("header").getAsJsonObject("result"),
                PredictResult.class);
        ServerException e = assertThrows(ServerException.class,
                () -> Protocol.attachTable(r, List.of(new byte[4])));
        assertEquals(ErrorCodes.BAD_REQUEST, e.getCode());
        e = assertThrows(ServerException.class, () -> Protocol.attachTable(r, List.of()));
        assertTrue(e.getServerMessage().contains("frame 0"), e.getServerMessage());
    }

    @Test
    void geojsonResultHasMeasurements() throws Exception {
        JsonObject h = Fixtures.load("reply_predict_result_geojson").getAsJsonObject("header");
        PredictResult r = Protocol.fromJson(h.getAsJsonObject("result"), PredictResult.class);
        assertNull(r.getTable());
        JsonArray features = r.getGeoJson().getAsJsonArray("features");
        assertEquals(r.getTileCount(), features.size());
        JsonObject meas = features.get(0).getAsJsonObject().getAsJsonObject("properties")
                .getAsJsonObject("measurements");
        assertEquals(1.25, meas.get("COX6C: mean").getAsDouble());
        assertTrue(r.getGeoJsonString().startsWith("{\"type\":\"FeatureCollection\""));
    }

    /** The client's own request encoding (PredictRequest) gives the fixture's header exactly. */
    @Test
    void predictRequestBuilderMatchesFixtures() throws Exception {
        JsonObject fx = Fixtures.load("request_predict_tiles");
        List<byte[]> frames = Fixtures.frames(fx);
        for (byte[] png : frames) {
            BufferedImage img = ImageIO.read(new ByteArrayInputStream(png));
            assertNotNull(img, "the fixture's tile is not a readable PNG");
            assertEquals(32, img.getWidth());
        }
        PredictRequest req = PredictRequest.builder()
                .requestId("predict-tiles").mpp(6.25).imageId("project/image-1")
                .tile(frames.get(0), 10000, 20000, 290, 290, "tile 1")
                .tile(frames.get(1), 10290, 20000, 290, 290, "tile 2")
                .format(PredictRequest.FORMAT_GEOJSON).objectType("tile")
                .deadline(Duration.ofSeconds(60)).build();
        RequestHeader h = Protocol.request(req.getRequestId(), "predict", req.toParams(Duration.ofSeconds(600)));
        assertEquals(fx.getAsJsonObject("header"), Protocol.toJsonTree(h));
        assertEquals(2, req.getImages().size());
        assertArrayEquals(frames.get(1), req.getImages().get(1));

        JsonObject fx2 = Fixtures.load("request_predict_tiles_table");
        PredictRequest req2 = PredictRequest.builder()
                .model("her2st").genes(List.of("COX6C", "ERBB2")).level(0.8)
                .format(PredictRequest.FORMAT_TABLE).classification("Tumor")
                .mpp(6.25).imageId("project/image-1")
                .tile(Fixtures.frames(fx2).get(0), 10000, 20000, 290, 290).build();
        RequestHeader h2 = Protocol.request("predict-tiles-table", "predict", req2.toParams(Duration.ofSeconds(60)));
        assertEquals(fx2.getAsJsonObject("header"), Protocol.toJsonTree(h2));

        JsonObject fx3 = Fixtures.load("request_predict_slide");
        PredictRequest req3 = PredictRequest.builder()
                .slide("/data/slides/section-B1.svs", new double[] {1000, 2000, 3000, 2000}, null).build();
        JsonObject h3 = Protocol.toJsonTree(Protocol.request("predict-slide", "predict",
                req3.toParams(Duration.ofSeconds(1))));
        h3.getAsJsonObject("params").remove("deadline_ms");
        assertEquals(fx3.getAsJsonObject("header"), h3);

        JsonObject hello = Fixtures.load("request_hello").getAsJsonObject("header");
        assertEquals(hello, Protocol.toJsonTree(Protocol.request("hello", "hello",
                new HelloParams(StimageClient.CLIENT_NAME, StimageClient.CLIENT_VERSION))));
        assertEquals(Fixtures.load("request_cancel").getAsJsonObject("header"),
                Protocol.toJsonTree(Protocol.request("cancel", "cancel", new CancelParams("predict-tiles"))));
        assertEquals(Fixtures.load("request_ping").getAsJsonObject("header"),
                Protocol.toJsonTree(Protocol.request("ping", "ping", null)));
    }

    @Test
    void predictRequestValidation() {
        byte[] img = {1, 2, 3};
        assertThrows(IllegalArgumentException.class, () -> PredictRequest.builder().build());
        assertThrows(IllegalArgumentException.class, () -> PredictRequest.builder().tile(img, 0, 0, 1, 1).build());
        assertThrows(IllegalArgumentException.class,
                () -> PredictRequest.builder().mpp(1).tile(img, 0, 0, 1, 1).slide("/a", (double[]) null, null).build());
        assertThrows(IllegalArgumentException.class, () -> PredictRequest.builder().tile(img, 0, 0, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> PredictRequest.builder().tile(img, Double.NaN, 0, 1, 1));
        assertThrows(IllegalArgumentException.class, () -> PredictRequest.builder().mpp(-1));
        assertThrows(IllegalArgumentException.class, () -> PredictRequest.builder().level(1.0));
        assertThrows(IllegalArgumentException.class, () -> PredictRequest.builder().format("csv"));
        assertThrows(IllegalArgumentException.class, () -> PredictRequest.builder().requestId(""));
        PredictRequest ok = PredictRequest.builder().mpp(0.5).tile(img, 0, 0, 1, 1).build();
        assertEquals(1, ok.getTileCount());
        assertNull(ok.getParams().getGenes());
        // an unset option is not sent at all (the server refuses nulls and unknown keys)
        JsonObject params = Protocol.toJsonTree(ok.toParams(Duration.ofMillis(1500)));
        assertEquals(Set.of("mpp", "tiles", "deadline_ms"), params.keySet());
        assertEquals(1500, params.get("deadline_ms").getAsLong());
        // strict JSON: NaN is refused before it reaches the wire
        JsonObject nan = new JsonObject();
        nan.addProperty("mpp", Double.NaN);
        assertThrows(IllegalArgumentException.class, () -> Protocol.encodeHeader(nan));
    }
}
