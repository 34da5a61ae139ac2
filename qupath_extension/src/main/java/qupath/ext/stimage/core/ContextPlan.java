package qupath.ext.stimage.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * Which tiles go in which request for a model with spatial context (hello's {@code context_um}
 * above 0): the backend joins each tile's features with the mean features of the tiles of the
 * same request whose centres lie within the context's reach, so a region is sent with a margin
 * of tiles around it, flagged {@code context_only} (read for context, never predicted or
 * returned), as {@code stimage predict-slide --region} reads the tissue tiles around a region.
 *
 * <p>Per region (an annotation's tiles, all on one grid of equal boxes):
 * <ul>
 * <li>the <b>margin</b> is the cells of the same grid, not region tiles, whose centres lie within
 *     the reach of a region tile's centre, and which lie wholly on the image (the rule of the
 *     region's own tiles); which of them are on tissue is decided when they are read, by the same
 *     test as the region's tiles (a tile under the minimum tissue is not sent);</li>
 * <li>the region's tiles are cut into square <b>blocks</b> of grid cells, as large as keeps a full
 *     block and everything within reach of it under the backend's {@code max_tiles}; each block
 *     is predicted with every tile within reach of one of its tiles (region tiles of other blocks
 *     and margin tiles) as context, so a tile has the same neighbours whatever block it falls in;</li>
 * <li>blocks are <b>packed</b> into requests, in order, while a request stays within
 *     {@code max_tiles}: blocks of one region always pack exactly (every tile sent is one of the
 *     region's tiles or margin tiles); blocks of different regions (each on its own grid) only
 *     when no tile of one lies within reach of a tile of the other.</li>
 * </ul>
 *
 * <p>Distances are measured as the backend measures them: box centres, at {@code tileUm / box
 * width} µm per full-resolution pixel, a centre on the reach included. Only when the backend
 * takes fewer tiles than one tile and its neighbours ({@code max_tiles} under 21 for the
 * default model's 500 µm at 200 µm tiles) is the context cut to the nearest tiles
 * ({@link #isTruncated()}).
 *
 * <p>Tile indices: the region tiles first, in the order given (region after region), then the
 * margin tiles, region after region, row by row.
 */
public final class ContextPlan {
    /** A centre on the reach counts (the backend's tolerance). */
    private static final double EDGE = 1 + 1e-9;

    /** One request: the tiles it predicts and the tiles it sends for context only (tile indices, ascending). */
    public static final class Request {
        private final int[] predicted;
        private final int[] context;

        Request(int[] predicted, int[] context) {
            this.predicted = predicted;
            this.context = context;
        }

        /** @return indices of the tiles predicted */
        public int[] getPredicted() {
            return predicted.clone();
        }

        /** @return indices of the tiles sent for context only */
        public int[] getContext() {
            return context.clone();
        }

        /** @return tiles sent */
        public int size() {
            return predicted.length + context.length;
        }

        @Override
        public String toString() {
            return "Request[" + predicted.length + " predicted + " + context.length + " context]";
        }
    }

    private final List<double[]> tiles;
    private final int[] parentOf;
    private final int regionCount;
    private final List<Request> requests;
    private final int blockSide;
    private final boolean truncated;

    private ContextPlan(List<double[]> tiles, int[] parentOf, int regionCount, List<Request> requests, int blockSide,
            boolean truncated) {
        this.tiles = Collections.unmodifiableList(tiles);
        this.parentOf = parentOf;
        this.regionCount = regionCount;
        this.requests = Collections.unmodifiableList(requests);
        this.blockSide = blockSide;
        this.truncated = truncated;
    }

    /**
     * Plans the requests of one run.
     *
     * @param regions each region's tile boxes {@code x, y, w, h} in full-resolution pixels (a
     *     region's boxes on one grid: equal sizes, origins a whole number of tiles apart)
     * @param tileUm the model's tile side in µm (hello's {@code tile_um})
     * @param contextUm the model's context reach in µm (hello's {@code context_um}, above 0)
     * @param imageWidth full-resolution image width
     * @param imageHeight full-resolution image height
     * @param maxTiles most tiles per request (hello's {@code max_tiles})
     * @return the plan
     * @throws IllegalArgumentException bad sizes, or a region whose boxes are not on one grid
     */
    public static ContextPlan build(List<List<double[]>> regions, double tileUm, double contextUm, int imageWidth,
            int imageHeight, int maxTiles) {
        if (!(tileUm > 0) || !(contextUm > 0) || Double.isInfinite(contextUm) || maxTiles < 1) {
            throw new IllegalArgumentException("a context plan needs a positive tile size, reach and max_tiles; got "
                    + tileUm + " µm, " + contextUm + " µm, " + maxTiles);
        }
        List<double[]> tiles = new ArrayList<>();
        List<Integer> parents = new ArrayList<>();
        List<Grid> grids = new ArrayList<>();
        for (int p = 0; p < regions.size(); p++) {
            for (double[] b : regions.get(p)) {
                if (b.length != 4 || !(b[2] > 0) || !(b[3] > 0)) {
                    throw new IllegalArgumentException("a tile box is x, y, w, h with a positive size");
                }
                tiles.add(b.clone());
                parents.add(p);
            }
        }
        int regionCount = tiles.size();
        int start = 0;
        int side = Integer.MAX_VALUE;
        for (int p = 0; p < regions.size(); p++) {
            int n = regions.get(p).size();
            if (n > 0) {
                Grid g = new Grid(p, tiles, start, n, tileUm, contextUm);
                grids.add(g);
                side = Math.min(side, g.blockSide(maxTiles));
            }
            start += n;
        }
        for (Grid g : grids) {
            g.addMargin(tiles, parents, imageWidth, imageHeight);
        }
        boolean truncated = false;
        List<Block> blocks = new ArrayList<>();
        for (Grid g : grids) {
            for (Block b : g.blocks(side == Integer.MAX_VALUE ? 1 : side)) {
                if (b.size() > maxTiles) {
                    b.truncate(g, maxTiles);
                    truncated = true;
                }
                blocks.add(b);
            }
        }
        int[] parentOf = parents.stream().mapToInt(Integer::intValue).toArray();
        List<Request> requests = pack(blocks, maxTiles, contextUm, tileUm);
        return new ContextPlan(tiles, parentOf, regionCount, requests, side == Integer.MAX_VALUE ? 0 : side,
                truncated);
    }

    /** @return every tile's box {@code x, y, w, h}: region tiles first, then margin tiles */
    public List<double[]> getTiles() {
        return tiles;
    }

    /**
     * @param index a tile index
     * @return the region (index into the regions given) the tile belongs to or surrounds
     */
    public int getParent(int index) {
        return parentOf[index];
    }

    /** @return the number of region tiles (indices below it); the others are margin tiles */
    public int getRegionCount() {
        return regionCount;
    }

    /** @return the number of margin tiles */
    public int getMarginCount() {
        return tiles.size() - regionCount;
    }

    /** @return the requests, in the order to send them */
    public List<Request> getRequests() {
        return requests;
    }

    /** @return side, in tiles, of the square blocks the regions were cut into */
    public int getBlockSide() {
        return blockSide;
    }

    /** @return whether some tile's context had to be cut to fit {@code max_tiles} (a very small limit) */
    public boolean isTruncated() {
        return truncated;
    }

    /** @return tiles sent over all requests (tiles shared by requests counted each time) */
    public int getTilesSent() {
        int n = 0;
        for (Request r : requests) {
            n += r.size();
        }
        return n;
    }

    @Override
    public String toString() {
        return "ContextPlan[" + regionCount + " region tiles + " + getMarginCount() + " margin tiles, "
                + requests.size() + (requests.size() == 1 ? " request" : " requests in blocks of " + blockSide + " x "
                + blockSide + " tiles, " + getTilesSent() + " tiles sent") + (truncated ? ", context truncated" : "")
                + "]";
    }

    // -- one region's grid ---------------------------------------------------------------------

    private static long key(long row, long col) {
        return (row << 32) ^ (col & 0xffffffffL);
    }

    /** A region's grid: cells of its tiles and of its margin, and the offsets within reach. */
    private static final class Grid {
        final int parent;
        final double ox;
        final double oy;
        final double w;
        final double h;
        final double umPerPx;
        final double reachUm;
        final int regionStart;
        final int regionCount;
        /** cell of each tile of this grid (region and margin), by tile index */
        final Map<Integer, long[]> cellOf = new HashMap<>();
        /** tile index by cell (region and margin) */
        final Map<Long, Integer> at = new HashMap<>();
        /** row, col offsets within reach (without 0, 0) */
        final List<int[]> offsets = new ArrayList<>();

        Grid(int parent, List<double[]> tiles, int start, int n, double tileUm, double contextUm) {
            this.parent = parent;
            double[] first = tiles.get(start);
            ox = first[0];
            oy = first[1];
            w = first[2];
            h = first[3];
            umPerPx = tileUm / w;
            reachUm = contextUm * EDGE;
            regionStart = start;
            regionCount = n;
            for (int i = start; i < start + n; i++) {
                double[] b = tiles.get(i);
                long col = Math.round((b[0] - ox) / w);
                long row = Math.round((b[1] - oy) / h);
                if (Math.abs(b[2] - w) > 0.5 || Math.abs(b[3] - h) > 0.5 || Math.abs(ox + col * w - b[0]) > 0.5
                        || Math.abs(oy + row * h - b[1]) > 0.5) {
                    throw new IllegalArgumentException("the tiles of region " + parent + " are not on one grid: "
                            + java.util.Arrays.toString(b) + " vs the first at " + ox + ", " + oy + " (" + w + " x "
                            + h + ")");
                }
                if (at.putIfAbsent(key(row, col), i) != null) {
                    throw new IllegalArgumentException("two tiles of region " + parent + " in one grid cell: "
                            + java.util.Arrays.toString(b));
                }
                cellOf.put(i, new long[] {row, col});
            }
            int mr = (int) Math.floor(reachUm / (h * umPerPx));
            int mc = (int) Math.floor(reachUm / (w * umPerPx));
            for (int dr = -mr; dr <= mr; dr++) {
                for (int dc = -mc; dc <= mc; dc++) {
                    if ((dr != 0 || dc != 0) && distUm(dr, dc) <= reachUm) {
                        offsets.add(new int[] {dr, dc});
                    }
                }
            }
        }

        double distUm(double dr, double dc) {
            return Math.hypot(dc * w, dr * h) * umPerPx;
        }

        boolean isOffset(long dr, long dc) {
            return (dr != 0 || dc != 0) && distUm(dr, dc) <= reachUm;
        }

        /** The largest block side whose block and everything within reach fit {@code maxTiles}. */
        int blockSide(int maxTiles) {
            int mr = 0;
            int mc = 0;
            for (int[] o : offsets) {
                mr = Math.max(mr, Math.abs(o[0]));
                mc = Math.max(mc, Math.abs(o[1]));
            }
            for (int s = (int) Math.floor(Math.sqrt(maxTiles)); s > 1; s--) {
                long n = 0;
                for (int r = -mr; r < s + mr; r++) {
                    for (int c = -mc; c < s + mc; c++) {
                        long dr = r - Math.max(0, Math.min(s - 1, r));
                        long dc = c - Math.max(0, Math.min(s - 1, c));
                        if ((dr == 0 && dc == 0) || isOffset(dr, dc)) {
                            n++;
                        }
                    }
                }
                if (n <= maxTiles) {
                    return s;
                }
            }
            return 1;
        }

        /** Adds the margin tiles of this region to the run's tiles. */
        void addMargin(List<double[]> tiles, List<Integer> parents, int imageWidth, int imageHeight) {
            TreeSet<long[]> cells = new TreeSet<>((a, b) -> a[0] != b[0] ? Long.compare(a[0], b[0])
                    : Long.compare(a[1], b[1]));
            for (int i = regionStart; i < regionStart + regionCount; i++) {
                long[] rc = cellOf.get(i);
                for (int[] o : offsets) {
                    long r = rc[0] + o[0];
                    long c = rc[1] + o[1];
                    if (!at.containsKey(key(r, c))) {
                        cells.add(new long[] {r, c});
                    }
                }
            }
            for (long[] rc : cells) {
                double x = ox + rc[1] * w;
                double y = oy + rc[0] * h;
                if (TileGeometry.insideImage(x, y, w, h, imageWidth, imageHeight)) {
                    int i = tiles.size();
                    tiles.add(new double[] {x, y, w, h});
                    parents.add(parent);
                    at.put(key(rc[0], rc[1]), i);
                    cellOf.put(i, rc);
                }
            }
        }

        /** The region's blocks of {@code side} x {@code side} cells, row by row. */
        List<Block> blocks(int side) {
            long minRow = Long.MAX_VALUE;
            long minCol = Long.MAX_VALUE;
            for (int i = regionStart; i < regionStart + regionCount; i++) {
                long[] rc = cellOf.get(i);
                minRow = Math.min(minRow, rc[0]);
                minCol = Math.min(minCol, rc[1]);
            }
            java.util.TreeMap<Long, List<Integer>> byBlock = new java.util.TreeMap<>();
            for (int i = regionStart; i < regionStart + regionCount; i++) {
                long[] rc = cellOf.get(i);
                long br = Math.floorDiv(rc[0] - minRow, side);
                long bc = Math.floorDiv(rc[1] - minCol, side);
                byBlock.computeIfAbsent(br * (1L << 31) + bc, k -> new ArrayList<>()).add(i);
            }
            List<Block> out = new ArrayList<>();
            for (List<Integer> members : byBlock.values()) {
                TreeSet<Integer> predicted = new TreeSet<>(members);
                TreeSet<Integer> context = new TreeSet<>();
                for (int i : members) {
                    long[] rc = cellOf.get(i);
                    for (int[] o : offsets) {
                        Integer j = at.get(key(rc[0] + o[0], rc[1] + o[1]));
                        if (j != null && !predicted.contains(j)) {
                            context.add(j);
                        }
                    }
                }
                out.add(new Block(this, predicted, context));
            }
            return out;
        }

        /** Bounding box of some tiles' centres: min x, min y, max x, max y. */
        double[] centreBox(Iterable<Integer> indices) {
            double[] b = {Double.MAX_VALUE, Double.MAX_VALUE, -Double.MAX_VALUE, -Double.MAX_VALUE};
            for (int i : indices) {
                long[] rc = cellOf.get(i);
                double cx = ox + rc[1] * w + w / 2;
                double cy = oy + rc[0] * h + h / 2;
                b[0] = Math.min(b[0], cx);
                b[1] = Math.min(b[1], cy);
                b[2] = Math.max(b[2], cx);
                b[3] = Math.max(b[3], cy);
            }
            return b;
        }
    }

    /** A block of one region: its tiles and the tiles within reach of them. */
    private static final class Block {
        final Grid grid;
        final TreeSet<Integer> predicted;
        TreeSet<Integer> context;

        Block(Grid grid, TreeSet<Integer> predicted, TreeSet<Integer> context) {
            this.grid = grid;
            this.predicted = predicted;
            this.context = context;
        }

        int size() {
            return predicted.size() + context.size();
        }

        /** Keeps the context tiles nearest the block's tiles (a block of one tile: max_tiles is tiny). */
        void truncate(Grid g, int maxTiles) {
            List<Integer> order = new ArrayList<>(context);
            Map<Integer, Double> dist = new HashMap<>();
            for (int j : order) {
                long[] b = g.cellOf.get(j);
                double d = Double.MAX_VALUE;
                for (int i : predicted) {
                    long[] a = g.cellOf.get(i);
                    d = Math.min(d, g.distUm(b[0] - a[0], b[1] - a[1]));
                }
                dist.put(j, d);
            }
            order.sort((a, b) -> {
                int c = Double.compare(dist.get(a), dist.get(b));
                return c != 0 ? c : Integer.compare(a, b);
            });
            int keep = Math.max(0, maxTiles - predicted.size());
            context = new TreeSet<>(order.subList(0, Math.min(keep, order.size())));
        }
    }

    // -- packing -------------------------------------------------------------------------------

    /** Packs blocks, in order, into requests of at most {@code maxTiles} tiles. */
    private static List<Request> pack(List<Block> blocks, int maxTiles, double contextUm, double tileUm) {
        List<Request> out = new ArrayList<>();
        TreeSet<Integer> predicted = new TreeSet<>();
        TreeSet<Integer> sent = new TreeSet<>();
        Map<Integer, double[]> boxByParent = new HashMap<>();
        for (Block b : blocks) {
            TreeSet<Integer> all = new TreeSet<>(b.predicted);
            all.addAll(b.context);
            double[] box = b.grid.centreBox(all);
            boolean fits = !predicted.isEmpty();
            if (fits) {
                TreeSet<Integer> union = new TreeSet<>(sent);
                union.addAll(all);
                fits = union.size() <= maxTiles;
            }
            if (fits) {
                for (Map.Entry<Integer, double[]> e : boxByParent.entrySet()) {
                    if (e.getKey() != b.grid.parent && !apart(e.getValue(), box, b.grid.umPerPx, contextUm)) {
                        fits = false;
                        break;
                    }
                }
            }
            if (!fits && !predicted.isEmpty()) {
                out.add(request(predicted, sent));
                predicted = new TreeSet<>();
                sent = new TreeSet<>();
                boxByParent.clear();
            }
            predicted.addAll(b.predicted);
            sent.addAll(all);
            boxByParent.merge(b.grid.parent, box, (x, y) -> new double[] {Math.min(x[0], y[0]), Math.min(x[1], y[1]),
                Math.max(x[2], y[2]), Math.max(x[3], y[3])});
        }
        if (!predicted.isEmpty()) {
            out.add(request(predicted, sent));
        }
        return out;
    }

    /** Whether no centre of one box lies within reach of a centre of the other. */
    private static boolean apart(double[] a, double[] b, double umPerPx, double contextUm) {
        double gx = Math.max(0, Math.max(a[0] - b[2], b[0] - a[2]));
        double gy = Math.max(0, Math.max(a[1] - b[3], b[1] - a[3]));
        return Math.hypot(gx, gy) * umPerPx > contextUm * EDGE;
    }

    private static Request request(TreeSet<Integer> predicted, TreeSet<Integer> sent) {
        int[] p = predicted.stream().mapToInt(Integer::intValue).toArray();
        int[] c = sent.stream().filter(i -> !predicted.contains(i)).mapToInt(Integer::intValue).toArray();
        return new Request(p, c);
    }
}
