package qupath.ext.stimage.client;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Against the real Python server: the test starts {@code stimage serve} (the bundled default model,
 * or {@code -Dstimage.model=DIR}) on a free port, and stops and restarts it.
 * Needs the venv ({@code -Dstimage.venv}, default {@code <repo>/.venv}); skipped without it or with
 * {@code -Dstimage.live=false}.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class LiveServerTest {
    /** µm per pixel of the bundled example image (HER2ST B4 crop). */
    static final double IMAGE_MPP = 0.69;
    private Path repo;
    private LiveServer server;
    private StimageClient client;
    private HelloResult hello;
    private ModelInfo model;
    private List<byte[]> tiles;
    private List<double[]> boxes;

    @BeforeAll
    void startServer() throws Exception {
        server = new LiveServer(Files.createTempFile("stimage-serve-", ".log"), List.of());
        repo = Fixtures.repo();
        client = new StimageClient(server.address(), Duration.ofSeconds(300), Duration.ofSeconds(5));
        server.start();
        hello = server.await(client::hello);
        model = hello.getDefaultModel();
        cutTiles();
    }

    @AfterAll
    void stopServer() throws Exception {
        if (client != null) {
            client.close();
        }
        if (server != null) {
            server.close();
        }
    }

    /** Tiles of the model's physical size cut from the bundled example image, encoded as PNG. */
    private void cutTiles() throws IOException {
        tiles = new ArrayList<>();
        boxes = new ArrayList<>();
        cutTiles(repo, model, tiles, boxes);
    }

    /** Up to 64 PNG tiles of the model's size (at {@link #IMAGE_MPP}) and their boxes; at least 48. */
    static void cutTiles(Path repo, ModelInfo model, List<byte[]> tiles, List<double[]> boxes) throws IOException {
        Path dir = repo.resolve("python_backend/stimage/examples/her2st_B4_crop/ST-imgs/B/B4");
        Path jpg;
        try (var s = Files.list(dir)) {
            jpg = s.filter(p -> p.toString().endsWith(".jpg")).findFirst().orElseThrow();
        }
        BufferedImage img = ImageIO.read(jpg.toFile());
        int side = (int) Math.round(model.getTileUm() / IMAGE_MPP);
        // a 8 x 8 grid from the centre outwards is tissue in this crop
        int x0 = Math.max(0, img.getWidth() / 2 - 4 * side);
        int y0 = Math.max(0, img.getHeight() / 2 - 4 * side);
        for (int j = 0; j < 8; j++) {
            for (int i = 0; i < 8; i++) {
                int x = x0 + i * side;
                int y = y0 + j * side;
                if (x + side > img.getWidth() || y + side > img.getHeight()) {
                    continue;
                }
                ByteArrayOutputStream out = new ByteArrayOutputStream();
                ImageIO.write(img.getSubimage(x, y, side, side), "png", out);
                tiles.add(out.toByteArray());
                boxes.add(new double[] {x, y, side, side});
            }
        }
        assertTrue(tiles.size() >= 48, "only " + tiles.size() + " tiles fit in " + jpg);
    }

    private PredictRequest.Builder request(int n) {
        PredictRequest.Builder b = PredictRequest.builder().mpp(IMAGE_MPP).imageId("java-test/B4");
        for (int i = 0; i < n; i++) {
            double[] box = boxes.get(i);
            b.tile(tiles.get(i), box[0], box[1], box[2], box[3], "tile " + i);
        }
        return b;
    }

    private List<String> twoGenes() {
        return model.getGenes().subList(0, 2);
    }

    // -- tests -------------------------------------------------------------------------------

    @Test
    @Order(1)
    void helloDescribesTheServer() {
        assertEquals("stimage", hello.getServer());
        assertEquals(Protocol.VERSION, hello.getProtocol());
        assertTrue(hello.getOps().containsAll(List.of("hello", "ping", "predict", "cancel")), hello.getOps().toString());
        assertTrue(model.isDefault());
        assertFalse(model.getGenes().isEmpty());
        assertTrue(model.getTileUm() > 0 && model.getTilePx() > 0);
        assertEquals(1.0, hello.getLimits().getHeartbeatS());
        assertEquals(16, hello.getLimits().getBatchSize());
        assertEquals("cpu", hello.getDevice());
    }

    @Test
    @Order(2)
    void ping() throws Exception {
        Duration rtt = client.ping();
        assertTrue(rtt.toNanos() > 0);
    }

    @Test
    @Order(3)
    void predictGeojsonWithProgress() throws Exception {
        List<int[]> progress = new ArrayList<>();
        PredictRequest req = request(4).genes(twoGenes()).build();
        PredictResult r = client.predict(req, (stage, done, total) -> progress.add(new int[] {done, total}), null);
        assertEquals(4, r.getTileCount());
        assertEquals(twoGenes(), r.getGenes());
        JsonArray features = r.getGeoJson().getAsJsonArray("features");
        assertEquals(4, features.size());
        for (int i = 0; i < 4; i++) {
            JsonObject f = features.get(i).getAsJsonObject();
            JsonObject props = f.getAsJsonObject("properties");
            assertEquals("tile " + i, props.get("name").getAsString());
            JsonObject meas = props.getAsJsonObject("measurements");
            for (String g : twoGenes()) {
                double mean = meas.get(g + ": mean").getAsDouble();
                assertTrue(Double.isFinite(mean) && mean >= 0, g + ": mean = " + mean);
                assertTrue(meas.get(g + ": 90% upper").getAsDouble() >= meas.get(g + ": 90% lower").getAsDouble());
            }
            // the object's geometry is the tile's box
            JsonArray ring = f.getAsJsonObject("geometry").getAsJsonArray("coordinates").get(0).getAsJsonArray();
            assertEquals(boxes.get(i)[0], ring.get(0).getAsJsonArray().get(0).getAsDouble(), 1e-6);
            assertEquals(boxes.get(i)[1], ring.get(0).getAsJsonArray().get(1).getAsDouble(), 1e-6);
        }
        assertFalse(progress.isEmpty(), "no progress reply");
        int[] last = progress.get(progress.size() - 1);
        assertEquals(4, last[0]);
        assertEquals(4, last[1]);
    }

    @Test
    @Order(4)
    void tableMatchesGeojson() throws Exception {
        PredictResult geo = client.predict(request(4).genes(twoGenes()).build(), null, null);
        PredictResult tab = client.predict(request(4).genes(twoGenes()).format(PredictRequest.FORMAT_TABLE).build(),
                null, null);
        assertEquals(PredictRequest.FORMAT_TABLE, tab.getFormat());
        float[][] t = tab.getTable();
        assertEquals(4, t.length);
        assertEquals(tab.getColumns().size(), t[0].length);
        assertEquals(List.of("tile 0", "tile 1", "tile 2", "tile 3"), tab.getNames());
        assertEquals(boxes.get(3)[0], tab.getBoxes().get(3)[0]);
        JsonArray features = geo.getGeoJson().getAsJsonArray("features");
        for (String g : twoGenes()) {
            float[] col = tab.getColumn(g + ": mean");
            for (int i = 0; i < 4; i++) {
                double m = features.get(i).getAsJsonObject().getAsJsonObject("properties")
                        .getAsJsonObject("measurements").get(g + ": mean").getAsDouble();
                assertEquals(m, col[i], 1e-4 * Math.max(1, Math.abs(m)), g + " tile " + i);
            }
        }
    }

    @Test
    @Order(5)
    void unknownGeneIsAServerException() {
        ServerException e = assertThrows(ServerException.class,
                () -> client.predict(request(1).genes(List.of("NOT_A_GENE_XYZ")).build(), null, null));
        assertEquals(ErrorCodes.UNKNOWN_GENE, e.getCode());
        assertTrue(e.getServerMessage().contains("NOT_A_GENE_XYZ"), e.getServerMessage());
        assertFalse(e.isRetryable());
    }

    @Test
    @Order(6)
    void wrongScaleCarriesDetails() {
        ServerException e = assertThrows(ServerException.class,
                () -> client.predict(PredictRequest.builder().mpp(IMAGE_MPP * 2)
                        .tile(tiles.get(0), 0, 0, 10, 10).build(), null, null));
        assertEquals(ErrorCodes.WRONG_SCALE, e.getCode());
        assertEquals(model.getTileUm(), e.getDetails().get("tile_um").getAsDouble());
    }

    @Test
    @Order(7)
    void otherProtocolVersionIsRefused() throws Exception {
        RequestHeader h = Protocol.request(Protocol.newRequestId(), "ping", null);
        h.setProtocol(2);
        ServerException e = assertThrows(ServerException.class,
                () -> client.exchange(h, List.of(), null, null, Duration.ofSeconds(30)));
        assertEquals(ErrorCodes.UNSUPPORTED_PROTOCOL, e.getCode());
        assertTrue(e.getServerMessage().contains("protocol 2"), e.getServerMessage());
        JsonArray versions = e.getDetails().getAsJsonArray("server_protocols");
        assertTrue(versions.contains(new com.google.gson.JsonPrimitive(1)), versions.toString());
        client.ping(); // the connection is still good
    }

    @Test
    @Order(8)
    void cancelWithATokenAtTheFirstProgress() {
        CancelToken token = new CancelToken();
        List<Integer> seen = new ArrayList<>();
        ServerException e = assertThrows(ServerException.class, () -> client.predict(request(48).build(),
                (stage, done, total) -> {
                    seen.add(done);
                    token.cancel();
                }, token));
        assertEquals(ErrorCodes.CANCELLED, e.getCode(), e.getMessage());
        assertFalse(seen.isEmpty());
        assertTrue(seen.get(seen.size() - 1) < 48, "all tiles were done before the cancel: " + seen);
    }

    @Test
    @Order(9)
    void cancelByIdFromAnotherThread() throws Exception {
        CancelToken token = new CancelToken();
        CountDownLatch started = new CountDownLatch(1);
        ProgressListener listener = new ProgressListener() {
            @Override
            public void onProgress(String stage, int done, int total) {
                started.countDown();
            }

            @Override
            public void onHeartbeat() {
                started.countDown();
            }
        };
        CompletableFuture<PredictResult> f = CompletableFuture.supplyAsync(() -> {
            try {
                return client.predict(request(48).build(), listener, token);
            } catch (ServerException e) {
                throw new RuntimeException(e);
            }
        });
        assertTrue(started.await(120, TimeUnit.SECONDS), "no progress or heartbeat");
        assertNotNull(token.getRequestId());
        assertTrue(client.cancel(token.getRequestId()));
        ExecutionException ex = assertThrows(ExecutionException.class, () -> f.get(60, TimeUnit.SECONDS));
        ServerException se = assertInstanceOf(ServerException.class, ex.getCause().getCause());
        assertEquals(ErrorCodes.CANCELLED, se.getCode());
        // a request that is not in flight: the server says nothing was cancelled
        assertFalse(client.cancel("no-such-request"));
    }

    @Test
    @Order(10)
    void benchmark() throws Exception {
        client.predict(request(16).build(), null, null); // warm
        long[] ns = new long[3];
        for (int k = 0; k < ns.length; k++) {
            long t0 = System.nanoTime();
            PredictResult r = client.predict(request(16).build(), null, null);
            ns[k] = System.nanoTime() - t0;
            assertEquals(16, r.getTileCount());
        }
        Arrays.sort(ns);
        int n = Math.min(48, tiles.size());
        long t0 = System.nanoTime();
        client.predict(request(n).build(), null, null);
        double s = (System.nanoTime() - t0) / 1e9;
        System.out.printf("BENCHMARK java client (%s, %s, cpu): 16-tile request latency median %.3f s "
                + "(min %.3f, max %.3f); %d tiles in %.2f s = %.1f tiles/s; ping %.2f ms%n",
                model.getName(), model.getEncoders(), ns[1] / 1e9, ns[0] / 1e9, ns[2] / 1e9, n, s, n / s,
                client.ping().toNanos() / 1e6);
    }

    @Test
    @Order(11)
    void serverStopIsReportedThenRecovered() throws Exception {
        CountDownLatch started = new CountDownLatch(1);
        CompletableFuture<PredictResult> f = CompletableFuture.supplyAsync(() -> {
            try {
                return client.predict(request(48).build(), (stage, done, total) -> started.countDown(), null);
            } catch (ServerException e) {
                throw new RuntimeException(e);
            }
        });
        assertTrue(started.await(120, TimeUnit.SECONDS), "no progress");
        server.process().destroy(); // SIGTERM: a graceful stop
        assertTrue(server.process().waitFor(60, TimeUnit.SECONDS), "the server did not stop");
        ExecutionException ex = assertThrows(ExecutionException.class, () -> f.get(60, TimeUnit.SECONDS));
        ServerException se = assertInstanceOf(ServerException.class, ex.getCause().getCause());
        assertTrue(Set.of(ErrorCodes.UNAVAILABLE, ErrorCodes.DISCONNECTED).contains(se.getCode()), se.getMessage());
        assertTrue(se.isRetryable());
        System.out.println("server stop reported as: " + se.getMessage());
        // while it is down: disconnected after the heartbeat timeout
        ServerException down = assertThrows(ServerException.class, () -> client.ping());
        assertEquals(ErrorCodes.DISCONNECTED, down.getCode());
        // restart on the same port: the same client works again (a fresh socket)
        server.start();
        HelloResult again = server.await(client::hello);
        assertEquals(hello.getVersion(), again.getVersion());
        PredictResult r = client.predict(request(2).genes(twoGenes()).build(), null, null);
        JsonElement mean = r.getGeoJson().getAsJsonArray("features").get(0).getAsJsonObject()
                .getAsJsonObject("properties").getAsJsonObject("measurements").get(twoGenes().get(0) + ": mean");
        assertTrue(Double.isFinite(mean.getAsDouble()));
    }

    @Test
    @Order(12)
    void aClientWithCurveKeysIsRefusedByAServerWithout() {
        org.zeromq.ZMQ.Curve.KeyPair theirs = org.zeromq.ZMQ.Curve.generateKeyPair();
        org.zeromq.ZMQ.Curve.KeyPair mine = org.zeromq.ZMQ.Curve.generateKeyPair();
        CurveKeys keys = CurveKeys.of(theirs.publicKey, mine.publicKey, mine.secretKey);
        Duration heartbeat = Duration.ofSeconds(5);
        try (StimageClient c = new StimageClient(server.address(), Duration.ofSeconds(60), heartbeat, keys)) {
            long t0 = System.nanoTime();
            ServerException e = assertThrows(ServerException.class, c::hello);
            double s = (System.nanoTime() - t0) / 1e9;
            assertEquals(ErrorCodes.HANDSHAKE_FAILED, e.getCode(), e.getMessage());
            assertTrue(e.getMessage().contains("without --curve-keys"), e.getMessage());
            assertTrue(s < heartbeat.toSeconds() + 2, "took " + s + " s");
            System.out.printf("CURVE client vs plain server: %s after %.2f s%n", e.getCode(), s);
        }
    }
}
