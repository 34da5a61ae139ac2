package qupath.ext.stimage.core;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The margin and chunks of a model with spatial context: every tile predicted once, with exactly
 * the neighbours (centres within the reach, as the backend measures) it has on the full grid of
 * the image, whatever block or request it falls in; requests within max_tiles.
 */
class ContextPlanTest {
    /** The bundled model: 200 µm tiles, context rings of 300 and 500 µm. */
    private static final double TILE_UM = 200;
    private static final double REACH = 500;
    /** A tile at 0.5 µm/px. */
    private static final double SIDE = 400;

    /** The tiles of a rectangle of grid cells (rows r0..r1-1, cols c0..c1-1), origin ox, oy. */
    private static List<double[]> rect(double ox, double oy, int r0, int r1, int c0, int c1) {
        List<double[]> out = new ArrayList<>();
        for (int r = r0; r < r1; r++) {
            for (int c = c0; c < c1; c++) {
                out.add(new double[] {ox + c * SIDE, oy + r * SIDE, SIDE, SIDE});
            }
        }
        return out;
    }

    private static double distUm(double[] a, double[] b) {
        double dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2);
        double dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2);
        return Math.hypot(dx, dy) * TILE_UM / a[2];
    }

    private static String key(double[] b) {
        return Math.round(b[0]) + "," + Math.round(b[1]);
    }

    /** The tiles a request gives a tile as context: those of the request within the reach (as the server finds them). */
    private static Set<String> neighboursInRequest(ContextPlan plan, ContextPlan.Request q, int tile) {
        Set<String> out = new HashSet<>();
        double[] t = plan.getTiles().get(tile);
        for (int[] part : new int[][] {q.getPredicted(), q.getContext()}) {
            for (int j : part) {
                double[] b = plan.getTiles().get(j);
                if (j != tile && distUm(t, b) <= REACH * (1 + 1e-9)) {
                    assertFalse(out.contains(key(b)) && !key(b).equals(key(t)), "a box sent twice: " + key(b));
                    out.add(key(b));
                }
            }
        }
        return out;
    }

    /** Every grid cell of the tile's grid lying on the image with its centre within the reach (brute force). */
    private static Set<String> neighboursOnImage(double[] t, int width, int height) {
        Set<String> out = new HashSet<>();
        for (int dr = -5; dr <= 5; dr++) {
            for (int dc = -5; dc <= 5; dc++) {
                double[] b = {t[0] + dc * SIDE, t[1] + dr * SIDE, SIDE, SIDE};
                if ((dr != 0 || dc != 0) && distUm(t, b) <= REACH
                        && TileGeometry.insideImage(b[0], b[1], b[2], b[3], width, height)) {
                    out.add(key(b));
                }
            }
        }
        return out;
    }

    /** Checks each region tile is predicted once, with all its on-image neighbours, in requests within max_tiles. */
    private static Map<Integer, Integer> check(ContextPlan plan, int width, int height, int maxTiles) {
        Map<Integer, Integer> counts = new HashMap<>();
        int[] predictedTimes = new int[plan.getRegionCount()];
        for (ContextPlan.Request q : plan.getRequests()) {
            assertTrue(q.size() <= maxTiles, q + " over max_tiles " + maxTiles);
            assertTrue(q.getPredicted().length > 0);
            for (int i : q.getPredicted()) {
                assertTrue(i < plan.getRegionCount(), "a margin tile is never predicted");
                predictedTimes[i]++;
                Set<String> got = neighboursInRequest(plan, q, i);
                assertEquals(neighboursOnImage(plan.getTiles().get(i), width, height), got,
                        "tile " + key(plan.getTiles().get(i)));
                counts.put(i, got.size());
            }
        }
        for (int i = 0; i < predictedTimes.length; i++) {
            assertEquals(1, predictedTimes[i], "tile " + i + " predicted once");
        }
        return counts;
    }

    @Test
    void aRegionInsideTheImageGetsTheFullRingOfTwentyNeighbours() {
        int w = 40 * (int) SIDE;
        List<double[]> region = rect(0, 0, 10, 14, 10, 14); // 4 x 4 tiles
        ContextPlan plan = ContextPlan.build(List.of(region), TILE_UM, REACH, w, w, 512);
        assertEquals(16, plan.getRegionCount());
        // a 4 x 4 block grown by the 500 µm disc (2.5 tiles): 4*4 + 4*(2*4) + 4*3 = 60 cells
        assertEquals(60 - 16, plan.getMarginCount());
        assertEquals(1, plan.getRequests().size());
        assertEquals(60, plan.getRequests().get(0).size());
        assertFalse(plan.isTruncated());
        Map<Integer, Integer> counts = check(plan, w, w, 512);
        assertTrue(counts.values().stream().allMatch(n -> n == 20), counts.toString());
        // the margin lies around the region: no margin cell inside it, all within the reach of a region tile
        for (int j = plan.getRegionCount(); j < plan.getTiles().size(); j++) {
            double[] b = plan.getTiles().get(j);
            assertEquals(0, plan.getParent(j));
            assertTrue(region.stream().noneMatch(r -> key(r).equals(key(b))));
            assertTrue(region.stream().anyMatch(r -> distUm(r, b) <= REACH));
        }
    }

    @Test
    void withoutTheMarginEdgeTilesHadFewerNeighbours() {
        // what the extension did before: the region's tiles alone give each other context
        List<double[]> region = rect(0, 0, 10, 14, 10, 14);
        int corner = 0;
        int n = 0;
        for (double[] b : region) {
            if (b != region.get(corner) && distUm(region.get(corner), b) <= REACH) {
                n++;
            }
        }
        assertEquals(7, n, "a corner tile of a 4 x 4 region alone: 3 in ring 1, 4 in ring 2");
        ContextPlan plan = ContextPlan.build(List.of(region), TILE_UM, REACH, 40 * (int) SIDE, 40 * (int) SIDE, 512);
        assertEquals(20, neighboursInRequest(plan, plan.getRequests().get(0), corner).size());
    }

    @Test
    void aRegionAtTheImageEdgeReadsNoMarginOffTheImage() {
        int w = 10 * (int) SIDE + 100; // a strip narrower than a tile at the right: no tile there
        int h = 8 * (int) SIDE;
        List<double[]> region = rect(0, 0, 0, 3, 0, 4); // the top-left corner of the image
        ContextPlan plan = ContextPlan.build(List.of(region), TILE_UM, REACH, w, h, 512);
        for (double[] b : plan.getTiles()) {
            assertTrue(TileGeometry.insideImage(b[0], b[1], b[2], b[3], w, h), key(b));
        }
        Map<Integer, Integer> counts = check(plan, w, h, 512);
        // the corner tile: (0,1) (0,2) (1,0) (1,1) (1,2) (2,0) (2,1): 7 neighbours on the image
        assertEquals(7, counts.get(0));
        // a region on the right edge: the strip is not a tile
        List<double[]> right = rect(0, 0, 3, 5, 8, 10);
        ContextPlan p2 = ContextPlan.build(List.of(right), TILE_UM, REACH, w, h, 512);
        check(p2, w, h, 512);
        for (double[] b : p2.getTiles()) {
            assertTrue(b[0] + b[2] <= w);
        }
    }

    @Test
    void bigRegionsAreChunkedWithEachChunksMarginWithinMaxTiles() {
        int w = 40 * (int) SIDE;
        List<double[]> region = rect(0, 0, 2, 32, 3, 33); // 30 x 30 = 900 tiles
        ContextPlan plan = ContextPlan.build(List.of(region), TILE_UM, REACH, w, w, 512);
        // 18 x 18 tiles and their surroundings: 324 + 144 + 12 = 480 <= 512 (19: 525)
        assertEquals(18, plan.getBlockSide());
        assertEquals(4, plan.getRequests().size());
        Map<Integer, Integer> counts = check(plan, w, w, 512);
        assertEquals(900, counts.size());
        assertTrue(counts.values().stream().allMatch(n -> n == 20));
        // a smaller limit: blocks of 3 (45 tiles with their surroundings), packed up to 48
        ContextPlan small = ContextPlan.build(List.of(region), TILE_UM, REACH, w, w, 48);
        assertEquals(3, small.getBlockSide());
        check(small, w, w, 48);
        assertTrue(small.getRequests().size() >= 100);
        // an irregular region (an L) at the image's corner, chunked
        List<double[]> ell = new ArrayList<>(rect(0, 0, 0, 12, 0, 3));
        ell.addAll(rect(0, 0, 9, 12, 3, 12));
        ContextPlan lp = ContextPlan.build(List.of(ell), TILE_UM, REACH, w, w, 64);
        check(lp, w, w, 64);
        // the tiles sent over all requests: the predicted ones once, plus the margins
        assertTrue(lp.getTilesSent() >= ell.size() + lp.getMarginCount());
    }

    @Test
    void aTinyMaxTilesKeepsTheNearestNeighboursAndSaysSo() {
        int w = 20 * (int) SIDE;
        List<double[]> region = rect(0, 0, 5, 8, 5, 8);
        ContextPlan plan = ContextPlan.build(List.of(region), TILE_UM, REACH, w, w, 10);
        assertTrue(plan.isTruncated());
        assertEquals(1, plan.getBlockSide());
        for (ContextPlan.Request q : plan.getRequests()) {
            assertTrue(q.size() <= 10);
            for (int i : q.getPredicted()) {
                // ring 1 (8 tiles within 300 µm) kept first: the 9 context places go to the nearest
                Set<String> got = neighboursInRequest(plan, q, i);
                assertTrue(got.size() >= 8, got.toString());
            }
        }
        // 21 (a tile and its 20 neighbours) is the least that keeps every neighbour
        assertFalse(ContextPlan.build(List.of(region), TILE_UM, REACH, w, w, 21).isTruncated());
    }

    @Test
    void regionsOnOtherGridsShareARequestOnlyWhenOutOfReach() {
        int w = 60 * (int) SIDE;
        // two annotations, each on its own grid (half a tile apart), far from each other
        List<double[]> a = rect(0, 0, 2, 5, 2, 5);
        List<double[]> b = rect(SIDE / 2, SIDE / 2, 30, 33, 30, 33);
        ContextPlan far = ContextPlan.build(List.of(a, b), TILE_UM, REACH, w, w, 512);
        assertEquals(1, far.getRequests().size(), "far apart: one request");
        check(far, w, w, 512);
        // side by side: a tile of one would be a neighbour of the other's tiles, so separate requests
        List<double[]> c = rect(SIDE / 2, SIDE / 2, 2, 5, 6, 9);
        ContextPlan near = ContextPlan.build(List.of(a, c), TILE_UM, REACH, w, w, 512);
        assertEquals(2, near.getRequests().size());
        check(near, w, w, 512);
        assertEquals(0, near.getParent(0));
        assertEquals(1, near.getParent(9));
        // region tiles keep their run order: region 0's, then region 1's
        assertArrayEquals(new int[] {0, 1, 2, 3, 4, 5, 6, 7, 8}, near.getRequests().get(0).getPredicted());
    }

    @Test
    void thePipelineSendsTheMarginContextOnlyAndLeavesGlassOut() throws Exception {
        int w = 40 * (int) SIDE;
        List<double[]> region = rect(0, 0, 10, 14, 10, 14);
        ContextPlan plan = ContextPlan.build(List.of(region), TILE_UM, REACH, w, w, 512);
        // glass: the margin's column 15, and one region tile (its first)
        java.util.function.IntPredicate glass = i -> i == 0 || Math.round(plan.getTiles().get(i)[0]) == 15 * SIDE;
        int glassMargin = 0;
        for (int j = plan.getRegionCount(); j < plan.getTiles().size(); j++) {
            glassMargin += glass.test(j) ? 1 : 0;
        }
        assertTrue(glassMargin > 0);
        java.util.concurrent.atomic.AtomicIntegerArray reads = new java.util.concurrent.atomic.AtomicIntegerArray(
                plan.getTiles().size());
        TilePipeline.Reader reader = i -> {
            reads.incrementAndGet(i);
            return new TilePipeline.Tile(i, plan.getTiles().get(i), null, new byte[] {1}, 0.5,
                    glass.test(i) ? 0.01 : 0.9);
        };
        List<List<TilePipeline.Tile>> batches = new ArrayList<>();
        TilePipeline.Result<Integer> r = TilePipeline.builder(plan.getTiles().size(), reader).plan(plan)
                .minTissue(0.25).build().run((batch, l, c) -> {
                    batches.add(batch);
                    return batch.size();
                });
        assertEquals(1, batches.size());
        List<TilePipeline.Tile> b = batches.get(0);
        assertEquals(15, b.stream().filter(t -> !t.isContextOnly()).count());
        assertEquals(plan.getMarginCount() - glassMargin, b.stream().filter(TilePipeline.Tile::isContextOnly).count());
        assertTrue(b.stream().noneMatch(t -> glass.test(t.getIndex())), "glass is not sent, not even as context");
        assertTrue(b.stream().filter(TilePipeline.Tile::isContextOnly).allMatch(t -> t.getIndex() >= 16));
        assertEquals(15, r.getSent());
        assertEquals(1, r.getSkipped());
        assertEquals(plan.getMarginCount() - glassMargin, r.getContextSent());
        for (int i = 0; i < reads.length(); i++) {
            assertEquals(1, reads.get(i), "tile " + i + " read once");
        }
    }

    @Test
    void chunkedRequestsPredictEveryTileOnceAndReuseReadsOfTheNextRequest() throws Exception {
        int w = 40 * (int) SIDE;
        List<double[]> region = rect(0, 0, 2, 14, 3, 15); // 12 x 12
        ContextPlan plan = ContextPlan.build(List.of(region), TILE_UM, REACH, w, w, 48);
        java.util.concurrent.atomic.AtomicIntegerArray reads = new java.util.concurrent.atomic.AtomicIntegerArray(
                plan.getTiles().size());
        TilePipeline.Reader reader = i -> {
            reads.incrementAndGet(i);
            return new TilePipeline.Tile(i, plan.getTiles().get(i), null, new byte[] {1}, 0.5, 0.9);
        };
        int[] predicted = new int[plan.getRegionCount()];
        List<int[]> progress = new ArrayList<>();
        TilePipeline.Result<Integer> r = TilePipeline.builder(plan.getTiles().size(), reader).plan(plan)
                .progress((d, t, m) -> progress.add(new int[] {d, t})).build().run((batch, l, c) -> {
                    assertTrue(batch.size() <= 48);
                    for (TilePipeline.Tile t : batch) {
                        if (!t.isContextOnly()) {
                            predicted[t.getIndex()]++;
                        }
                    }
                    return batch.size();
                });
        for (int n : predicted) {
            assertEquals(1, n);
        }
        assertEquals(144, r.getSent());
        assertEquals(plan.getRequests().size(), r.getRequests());
        assertEquals(plan.getTilesSent() - 144, r.getContextSent());
        int[] inRequests = new int[plan.getTiles().size()];
        for (ContextPlan.Request q : plan.getRequests()) {
            for (int[] part : new int[][] {q.getPredicted(), q.getContext()}) {
                for (int i : part) {
                    inRequests[i]++;
                }
            }
        }
        int readsTotal = 0;
        for (int i = 0; i < inRequests.length; i++) {
            assertTrue(reads.get(i) >= 1 && reads.get(i) <= inRequests[i]);
            readsTotal += reads.get(i);
        }
        assertTrue(readsTotal < plan.getTilesSent(), "reads shared by consecutive requests are reused");
        assertEquals(144, progress.get(progress.size() - 1)[1], "progress counts the region's tiles");
        assertEquals(144, progress.get(progress.size() - 1)[0]);
    }

    @Test
    void badInputIsRefused() {
        List<double[]> offGrid = new ArrayList<>(rect(0, 0, 0, 2, 0, 2));
        offGrid.add(new double[] {SIDE * 3 + 50, 0, SIDE, SIDE});
        assertThrows(IllegalArgumentException.class, () -> ContextPlan.build(List.of(offGrid), TILE_UM, REACH, 9999,
                9999, 512));
        assertThrows(IllegalArgumentException.class, () -> ContextPlan.build(List.of(rect(0, 0, 0, 2, 0, 2)),
                TILE_UM, 0, 9999, 9999, 512));
        assertThrows(IllegalArgumentException.class, () -> ContextPlan.build(List.of(rect(0, 0, 0, 2, 0, 2)),
                TILE_UM, REACH, 9999, 9999, 0));
        ContextPlan empty = ContextPlan.build(List.of(List.of()), TILE_UM, REACH, 9999, 9999, 512);
        assertTrue(empty.getRequests().isEmpty());
    }
}
