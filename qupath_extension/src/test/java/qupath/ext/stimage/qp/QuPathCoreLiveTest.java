package qupath.ext.stimage.qp;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import qupath.ext.stimage.STImage;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.ModelInfo;
import qupath.ext.stimage.client.ServerException;
import qupath.ext.stimage.client.StimageClient;
import qupath.ext.stimage.core.Backend;
import qupath.ext.stimage.core.Features;
import qupath.ext.stimage.core.ImageEncoding;
import qupath.ext.stimage.core.RunSummary;
import qupath.ext.stimage.core.StimageIds;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.ImageServerMetadata;
import qupath.lib.images.servers.WrappedBufferedImageServer;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.PathObjects;
import qupath.lib.objects.utils.Tiler;
import qupath.lib.plugins.workflow.ScriptableWorkflowStep;
import qupath.lib.plugins.workflow.WorkflowStep;
import qupath.lib.regions.ImagePlane;
import qupath.lib.roi.ROIs;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The QuPath layer end to end, on QuPath's real core (not the stand-ins): an ImageData over the
 * bundled HER2ST crop (0.689 µm/px), an annotation, and a live {@code stimage serve} that the
 * test starts. Run by scripts/qupath_core_check.sh (which compiles it against a QuPath core
 * build) and by the Gradle build; skipped without the venv or with {@code -Dstimage.live=false}.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class QuPathCoreLiveTest {
    private static final double MPP = 0.689;
    private static final Duration START_TIMEOUT = Duration.ofSeconds(240);

    private Path repo;
    private Path log;
    private Process server;
    private String address;
    private ModelInfo model;
    private List<String> genes;
    private BufferedImage crop;
    private ImageData<BufferedImage> imageData;
    private PathObject annotation;
    private PathObject userDetection;
    private PathObject userTile;
    private Set<UUID> firstIds;

    @BeforeAll
    void start() throws Exception {
        assumeTrue(!"false".equals(System.getProperty("stimage.live")), "live tests off (-Dstimage.live=false)");
        repo = repo();
        Path stimage = Paths.get(System.getProperty("stimage.venv", repo.resolve(".venv").toString()), "bin", "stimage");
        assumeTrue(Files.isExecutable(stimage), "no stimage at " + stimage + " (run scripts/setup.sh)");
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        address = "tcp://127.0.0.1:" + port;
        log = Files.createTempFile("stimage-serve-", ".log");
        server = new ProcessBuilder(stimage.toString(), "serve", "--port", String.valueOf(port), "--device", "cpu")
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        HelloResult hello = waitForServer();
        model = hello.getDefaultModel();
        genes = model.getGenes().subList(0, 2);
        Path dir = repo.resolve("python_backend/stimage/examples/her2st_B4_crop/ST-imgs/B/B4");
        try (var s = Files.list(dir)) {
            // QuPath's image readers give RGB as TYPE_INT_RGB (ImageIO gives JPEGs as 3-byte BGR)
            crop = ImageEncoding.toRgb(ImageIO.read(s.filter(p -> p.toString().endsWith(".jpg")).findFirst()
                    .orElseThrow().toFile()));
        }
        imageData = image("B4_crop", MPP);
        // an annotation of 4 x 4 model tiles in the tissue, with two objects of the user's under it
        int side = (int) Math.round(model.getTileUm() / MPP);
        annotation = PathObjects.createAnnotationObject(ROIs.createRectangleROI(1000, 1000, 4 * side, 4 * side,
                ImagePlane.getDefaultPlane()));
        imageData.getHierarchy().addObject(annotation, true);
        userDetection = PathObjects.createDetectionObject(ROIs.createRectangleROI(1100, 1100, 40, 40,
                ImagePlane.getDefaultPlane()));
        userTile = PathObjects.createTileObject(ROIs.createRectangleROI(1200, 1200, side, side,
                ImagePlane.getDefaultPlane()));
        annotation.addChildObjects(List.of(userDetection, userTile));
        imageData.getHierarchy().getSelectionModel().setSelectedObject(annotation);
    }

    @AfterAll
    void stop() throws Exception {
        Backend.closeClients();
        if (server != null) {
            server.destroy();
            if (!server.waitFor(30, TimeUnit.SECONDS)) {
                server.destroyForcibly();
            }
        }
    }

    private ImageData<BufferedImage> image(String name, double mpp) {
        WrappedBufferedImageServer s = new WrappedBufferedImageServer(name, crop);
        ImageData<BufferedImage> d = new ImageData<>(s);
        if (mpp > 0) {
            d.updateServerMetadata(new ImageServerMetadata.Builder(s.getMetadata()).pixelSizeMicrons(mpp, mpp).build());
        }
        return d;
    }

    private static Path repo() {
        String prop = System.getProperty("stimage.repo");
        if (prop != null && !prop.isBlank()) {
            return Paths.get(prop).toAbsolutePath();
        }
        Path p = Paths.get("").toAbsolutePath();
        while (p != null && !Files.isDirectory(p.resolve("tests/fixtures/protocol"))) {
            p = p.getParent();
        }
        if (p == null) {
            throw new IllegalStateException("pass -Dstimage.repo");
        }
        return p;
    }

    private HelloResult waitForServer() throws Exception {
        long end = System.nanoTime() + START_TIMEOUT.toNanos();
        try (StimageClient c = new StimageClient(address, Duration.ofSeconds(30), Duration.ofSeconds(3))) {
            while (true) {
                if (!server.isAlive()) {
                    fail("the server exited:\n" + Files.readString(log, StandardCharsets.UTF_8));
                }
                try {
                    return c.hello();
                } catch (ServerException e) {
                    if (System.nanoTime() > end) {
                        fail("no hello within " + START_TIMEOUT + ":\n" + Files.readString(log, StandardCharsets.UTF_8));
                    }
                }
            }
        }
    }

    private Map<String, Object> options(Object... kv) {
        Map<String, Object> m = new java.util.LinkedHashMap<>();
        m.put("server", address);
        m.put("genes", genes);
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    private List<PathObject> stimageChildren(PathObject parent, boolean tiles) {
        return parent.getChildObjects().stream()
                .filter(p -> StimageIds.isStimage(p.getID()) && (!tiles || p.isTile()))
                .collect(Collectors.toList());
    }

    private int expectedTiles() {
        int side = (int) Math.round(model.getTileUm() / MPP);
        return Tiler.builder(side, side).cropTiles(false).filterByCentroid(true).alignCenter().build()
                .createROIs(annotation.getROI()).size();
    }

    // -- tests -------------------------------------------------------------------------------

    @Test
    @Order(1)
    void predictPutsTilesWithMeasurementsUnderTheAnnotation() {
        RunSummary s = STImage.predict(imageData, options("batchSize", 16, "minTissue", 0));
        List<PathObject> tiles = stimageChildren(annotation, true);
        assertEquals(16, expectedTiles());
        assertEquals(16, tiles.size(), "one STImage tile per Tiler tile");
        assertEquals(16, s.getAdded());
        assertEquals(0, s.getRemoved());
        for (PathObject t : tiles) {
            for (String g : genes) {
                Number v = t.getMeasurements().get(g + ": mean");
                assertTrue(v != null && Double.isFinite(v.doubleValue()), g + ": mean of " + t);
                assertTrue(t.getMeasurements().containsKey(g + ": P(high)") || model.getClassifierGenes().isEmpty());
            }
            assertEquals(290, t.getROI().getBoundsWidth(), 0.01);
            assertTrue(annotation.getROI().contains(t.getROI().getCentroidX(), t.getROI().getCentroidY()));
        }
        if (model.getContextUm() > 0) {
            // spatial context: the margin around the annotation (tissue tiles of the same grid within
            // the reach, sent context_only) gives its edge tiles neighbours outside it
            StringBuilder counts = new StringBuilder();
            for (PathObject t : tiles) {
                int alone = 0;
                for (PathObject u : tiles) {
                    double d = Math.hypot(u.getROI().getCentroidX() - t.getROI().getCentroidX(),
                            u.getROI().getCentroidY() - t.getROI().getCentroidY()) * model.getTileUm() / 290;
                    alone += u != t && d <= model.getContextUm() * (1 + 1e-9) ? 1 : 0;
                }
                int n = t.getMeasurements().get("Tile: context tiles").intValue();
                counts.append(' ').append(n).append('/').append(alone);
                assertTrue(n >= alone && n <= 20, "context tiles " + n + ", " + alone + " from the annotation alone");
            }
            System.out.println("predict: Tile: context tiles / from the annotation's tiles alone:" + counts);
            assertTrue(tiles.stream().mapToInt(t -> t.getMeasurements().get("Tile: context tiles").intValue()).sum()
                    > 7 * 4 + 10 * 8 + 14 * 4, "the margin adds neighbours: " + counts);
        }
        assertTrue(annotation.getChildObjects().contains(userDetection), "the user's detection stays");
        assertTrue(annotation.getChildObjects().contains(userTile), "the user's tile stays");
        firstIds = tiles.stream().map(PathObject::getID).collect(Collectors.toSet());
        // recorded in the workflow as a script line that "Run for project" repeats
        WorkflowStep step = imageData.getHistoryWorkflow().getLastStep();
        assertEquals("STImage: Predict expression", step.getName());
        String script = ((ScriptableWorkflowStep) step).getScript();
        assertTrue(script.startsWith("qupath.ext.stimage.STImage.predict(getCurrentImageData(), [server: '" + address),
                script);
        assertTrue(script.contains("genes: ['" + genes.get(0) + "', '" + genes.get(1) + "']"), script);
        System.out.println("predict: " + s.describe());
    }

    @Test
    @Order(2)
    void rerunningReplacesTheTilesAndKeepsTheUsersObjects() {
        int before = annotation.nChildObjects();
        RunSummary s = STImage.predict(imageData, options("batchSize", 16, "minTissue", 0));
        List<PathObject> tiles = stimageChildren(annotation, true);
        assertEquals(16, tiles.size(), "count unchanged");
        assertEquals(16, s.getRemoved());
        assertEquals(before, annotation.nChildObjects());
        Set<UUID> ids = tiles.stream().map(PathObject::getID).collect(Collectors.toSet());
        assertTrue(java.util.Collections.disjoint(ids, firstIds), "new objects, not the old ones");
        assertTrue(annotation.getChildObjects().contains(userDetection));
        assertTrue(annotation.getChildObjects().contains(userTile));
        assertFalse(StimageIds.isStimage(userTile.getID()));
    }

    @Test
    @Order(3)
    void benchmarkSixteenTileBatches() {
        // end to end: hello, tile read at the model's resolution, PNG, one 16-tile request, import
        List<Double> ms = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            long t0 = System.nanoTime();
            STImage.predict(imageData, options("batchSize", 16, "minTissue", 0));
            ms.add((System.nanoTime() - t0) / 1e6);
        }
        double[] sorted = ms.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        System.out.printf("BENCHMARK qupath-layer 16-tile batch end to end: median %.0f ms (runs %s)%n", sorted[1], ms);
        assertEquals(16, stimageChildren(annotation, true).size());
    }

    @Test
    @Order(4)
    void wholeImageRunGoesUnderOneRegionAnnotation() {
        ImageData<BufferedImage> whole = image("B4_crop whole", MPP);
        long t0 = System.nanoTime();
        RunSummary s = STImage.predict(whole, options("batchSize", 32, "region", "image"));
        double sec = (System.nanoTime() - t0) / 1e9;
        List<PathObject> regions = whole.getHierarchy().getAnnotationObjects().stream()
                .filter(a -> Features.REGION_NAME.equals(a.getName())).collect(Collectors.toList());
        assertEquals(1, regions.size());
        PathObject region = regions.get(0);
        assertTrue(StimageIds.isStimage(region.getID()));
        assertTrue(region.isLocked());
        assertEquals(s.getAdded(), stimageChildren(region, true).size());
        assertTrue(s.getAdded() > 50, s.describe());
        System.out.printf("BENCHMARK qupath-layer whole image: %d tiles predicted (%d glass skipped) in %.1f s = %.2f "
                + "tiles/s end to end (batch 32)%n", s.getAdded(), s.getSkipped(), sec, s.getAdded() / sec);
        RunSummary again = STImage.predict(whole, options("batchSize", 32, "region", "image"));
        assertEquals(1, whole.getHierarchy().getAnnotationObjects().size(), "the region annotation is reused");
        assertEquals(s.getAdded(), again.getRemoved());
        assertEquals(again.getAdded(), stimageChildren(region, true).size());
    }

    @Test
    @Order(5)
    void cellsComeBackTypedUnderTheAnnotation() {
        ImageData<BufferedImage> d = image("B4_crop cells", MPP);
        PathObject a = PathObjects.createAnnotationObject(ROIs.createRectangleROI(1500, 1500, 500, 400,
                ImagePlane.getDefaultPlane()));
        d.getHierarchy().addObject(a, true);
        d.getHierarchy().getSelectionModel().setSelectedObject(a);
        Map<String, Object> o = Map.of("server", address, "chunkPx", 256);
        RunSummary s = STImage.detectCells(d, o);
        List<PathObject> cells = a.getChildObjects().stream().filter(PathObject::isCell).collect(Collectors.toList());
        assertTrue(cells.size() > 10, s.describe());
        assertEquals(s.getAdded(), cells.size());
        Set<UUID> ids = new HashSet<>();
        for (PathObject c : cells) {
            assertTrue(StimageIds.isStimage(c.getID()));
            assertTrue(c.getMeasurements().containsKey("Cell: type entropy"), c.getMeasurements().toString());
            assertTrue(a.getROI().contains(c.getROI().getCentroidX(), c.getROI().getCentroidY()));
            assertTrue(((qupath.lib.objects.PathCellObject) c).getNucleusROI() != null);
            assertTrue(ids.add(c.getID()));
        }
        int total = s.getCounts().values().stream().mapToInt(Integer::intValue).sum();
        assertEquals(cells.size(), total);
        RunSummary again = STImage.detectCells(d, o);
        assertEquals(cells.size(), again.getRemoved());
        assertEquals(again.getAdded(), a.getChildObjects().stream().filter(PathObject::isCell).count());
        System.out.println("cells: " + s.describe());
    }

    @Test
    @Order(6)
    void explainPutsScoredNucleiUnderTheTile() {
        PathObject tile = stimageChildren(annotation, true).get(5);
        imageData.getHierarchy().getSelectionModel().setSelectedObject(tile);
        // the minimum tissue predict used: the tile's neighbours are those it was predicted with
        RunSummary s = STImage.explain(imageData, Map.of("server", address, "genes", List.of(genes.get(0)),
                "numSamples", 30, "minTissue", 0));
        List<PathObject> nuclei = new ArrayList<>(tile.getChildObjects());
        assertTrue(nuclei.size() > 0, s.describe());
        for (PathObject n : nuclei) {
            assertTrue(n.isDetection());
            assertTrue(StimageIds.isStimage(n.getID()));
            assertTrue(n.getMeasurements().containsKey("LIME: " + genes.get(0)), n.getMeasurements().toString());
        }
        if (model.getContextUm() > 0) {
            // a model with spatial context: the tile is sent with the neighbours predict gave it, held
            // fixed, and with the model's view of it (read as predict read it, model_tile), so the
            // prediction explained is the tile's "<gene>: mean" to float precision, although this image
            // (0.689 µm/px) is not at the model's resolution (without model_tile the backend resized the
            // full-resolution tile itself: 0.4% off).
            double mean = tile.getMeasurements().get(genes.get(0) + ": mean").doubleValue();
            int context = tile.getMeasurements().get("Tile: context tiles").intValue();
            Double explained = s.getPredictions().get(genes.get(0));
            System.out.printf("explain: %s: the tile's mean %.6f (Tile: context tiles %d), explained %.6f "
                    + "(relative difference %.1e)%n", genes.get(0), mean, context, explained,
                    Math.abs(explained - mean) / Math.abs(mean));
            assertTrue(s.describe().contains("with its " + context + " neighbouring tiles held fixed"), s.describe());
            assertEquals(mean, explained, 1e-5 * Math.abs(mean), "explained with its neighbours: the tile's measurement");
        }
        RunSummary again = STImage.explain(imageData, Map.of("server", address, "genes", List.of(genes.get(0)),
                "numSamples", 30, "seed", 1, "minTissue", 0));
        assertEquals(nuclei.size(), again.getRemoved());
        System.out.println("explain: " + s.describe());
        imageData.getHierarchy().getSelectionModel().setSelectedObject(annotation);
    }

    @Test
    @Order(7)
    void clearMessagesNotStackTraces() {
        STImage.RunException gene = assertThrows(STImage.RunException.class,
                () -> STImage.predict(imageData, Map.of("server", address, "genes", List.of("NOT_A_GENE"))));
        assertEquals("Unknown gene", gene.getUserMessage().getTitle());
        assertTrue(gene.getMessage().contains("NOT_A_GENE"));
        STImage.RunException model = assertThrows(STImage.RunException.class,
                () -> STImage.predict(imageData, Map.of("server", address, "model", "lung")));
        assertEquals("Model missing", model.getUserMessage().getTitle());
        ImageData<BufferedImage> uncalibrated = image("no pixel size", 0);
        STImage.RunException px = assertThrows(STImage.RunException.class,
                () -> STImage.predict(uncalibrated, Map.of("server", address)));
        assertEquals("Image without pixel size", px.getUserMessage().getTitle());
        RunSummary typed = STImage.predict(uncalibrated, Map.of("server", address, "mpp", MPP, "genes", genes,
                "region", "image", "minTissue", 0.9));
        assertTrue(typed.getAdded() > 0, "a typed µm/px stands in for the calibration");
        STImage.RunException down = assertThrows(STImage.RunException.class,
                () -> STImage.predict(imageData, Map.of("server", "tcp://127.0.0.1:1")));
        assertEquals("STImage backend not running", down.getUserMessage().getTitle());
        assertEquals("stimage serve --port 1", down.getUserMessage().getCommand());
        assertEquals(Arrays.asList(genes.get(0), genes.get(1)), genes);
    }
}
