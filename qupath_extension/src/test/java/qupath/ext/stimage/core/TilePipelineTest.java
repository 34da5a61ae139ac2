package qupath.ext.stimage.core;

import com.google.gson.JsonObject;
import org.junit.jupiter.api.Test;
import qupath.ext.stimage.client.CancelToken;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.ServerException;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TilePipelineTest {

    /** Tiles whose tissue fraction is given per index. */
    private static TilePipeline.Reader reader(double... tissue) {
        return i -> new TilePipeline.Tile(i, new double[] {i * 10.0, 0, 10, 10}, null, new byte[] {1, 2, 3}, 0.9,
                tissue[i]);
    }

    private static double[] uniform(int n, double v) {
        double[] t = new double[n];
        java.util.Arrays.fill(t, v);
        return t;
    }

    /** Records batches (as tile indexes) and answers with the indexes. */
    private static final class Recorder implements TilePipeline.Sender<List<Integer>> {
        final List<List<Integer>> calls = Collections.synchronizedList(new ArrayList<>());

        @Override
        public List<Integer> send(List<TilePipeline.Tile> batch, qupath.ext.stimage.client.ProgressListener l,
                CancelToken cancel) throws ServerException {
            List<Integer> idx = new ArrayList<>();
            for (TilePipeline.Tile t : batch) {
                idx.add(t.getIndex());
            }
            calls.add(idx);
            l.onProgress("predict", batch.size(), batch.size());
            return idx;
        }
    }

    @Test
    void tilesGoInOrderInBoundedBatches() throws Exception {
        Recorder rec = new Recorder();
        List<int[]> progress = new ArrayList<>();
        TilePipeline.Result<List<Integer>> r = TilePipeline.builder(10, reader(uniform(10, 0.9)))
                .batchSize(4).threads(3).progress((d, t, m) -> progress.add(new int[] {d, t})).build().run(rec);
        assertEquals(List.of(List.of(0, 1, 2, 3), List.of(4, 5, 6, 7), List.of(8, 9)), rec.calls);
        assertEquals(10, r.getSent());
        assertEquals(0, r.getSkipped());
        assertEquals(3, r.getRequests());
        assertEquals(3, r.getResults().size());
        assertEquals(3, r.getBatchNanos().size());
        int last = -1;
        for (int[] p : progress) {
            assertTrue(p[0] >= last, "progress never goes back");
            assertEquals(10, p[1]);
            last = p[0];
        }
        assertEquals(10, last);
    }

    @Test
    void glassTilesAreSkippedAndNotSent() throws Exception {
        Recorder rec = new Recorder();
        double[] t = {0.9, 0.0, 0.1, 0.9, 0.3, 0.29};
        TilePipeline.Result<List<Integer>> r = TilePipeline.builder(6, reader(t)).batchSize(2).minTissue(0.3)
                .build().run(rec);
        assertEquals(List.of(List.of(0, 3), List.of(4)), rec.calls);
        assertEquals(3, r.getSent());
        assertEquals(3, r.getSkipped());
        TilePipeline.Reader sparse = i -> i % 2 == 0 ? null : reader(uniform(4, 1)).read(i);
        Recorder rec2 = new Recorder();
        assertEquals(2, TilePipeline.builder(4, sparse).batchSize(8).build().run(rec2).getSkipped(),
                "no pixels (null) counts as skipped");
    }

    @Test
    void allGlassIsAClearProblemNotARequest() {
        Recorder rec = new Recorder();
        StimageException e = assertThrows(StimageException.class,
                () -> TilePipeline.builder(5, reader(uniform(5, 0.01))).minTissue(0.25).build().run(rec));
        assertEquals("No tissue", e.getUserMessage().getTitle());
        assertTrue(e.getUserMessage().getText().contains("25%"));
        assertTrue(rec.calls.isEmpty());
    }

    @Test
    void aFirstBatchWithoutTissueIsSentAgainAfterTheStainIsFitted() throws Exception {
        // the backend fits the stain on the first request that has a tissue-rich tile
        double[] t = {0.3, 0.3, 0.9, 0.9, 0.3};
        List<List<Integer>> calls = new ArrayList<>();
        boolean[] fitted = {false};
        TilePipeline.Sender<List<Integer>> sender = (batch, l, c) -> {
            List<Integer> idx = new ArrayList<>();
            boolean rich = false;
            for (TilePipeline.Tile tile : batch) {
                idx.add(tile.getIndex());
                rich |= tile.getTissue() >= 0.5;
            }
            calls.add(idx);
            if (!fitted[0] && !rich) {
                throw new ServerException(ErrorCodes.NO_TISSUE, "none of the tiles is at least 50% tissue");
            }
            fitted[0] = true;
            return idx;
        };
        TilePipeline.Result<List<Integer>> r = TilePipeline.builder(5, reader(t)).batchSize(2).build().run(sender);
        assertEquals(List.of(List.of(0, 1), List.of(2, 3), List.of(0, 1), List.of(4)), calls);
        assertEquals(5, r.getSent());
        assertEquals(1, r.getDeferred());
        assertEquals(List.of(List.of(2, 3), List.of(0, 1), List.of(4)), r.getResults());
    }

    @Test
    void noTissueAnywhereIsTheBackendsError() {
        ServerException noTissue = new ServerException(ErrorCodes.NO_TISSUE, "none");
        TilePipeline.Sender<Object> sender = (b, l, c) -> {
            throw noTissue;
        };
        ServerException e = assertThrows(ServerException.class,
                () -> TilePipeline.builder(4, reader(uniform(4, 0.4))).batchSize(2).build().run(sender));
        assertSame(noTissue, e);
    }

    @Test
    void busyIsRetriedOtherErrorsStopTheRun() throws Exception {
        AtomicInteger n = new AtomicInteger();
        TilePipeline.Sender<Integer> busyTwice = (b, l, c) -> {
            if (n.incrementAndGet() <= 2) {
                JsonObject d = new JsonObject();
                d.addProperty("retry_after_ms", 10);
                throw new ServerException(ErrorCodes.BUSY, "busy", d);
            }
            return b.size();
        };
        TilePipeline.Result<Integer> r = TilePipeline.builder(3, reader(uniform(3, 1))).batchSize(8).build()
                .run(busyTwice);
        assertEquals(3, r.getSent());
        assertEquals(3, r.getRequests());
        TilePipeline.Sender<Integer> wrongGene = (b, l, c) -> {
            throw new ServerException(ErrorCodes.UNKNOWN_GENE, "no gene X");
        };
        ServerException e = assertThrows(ServerException.class,
                () -> TilePipeline.builder(3, reader(uniform(3, 1))).build().run(wrongGene));
        assertEquals(ErrorCodes.UNKNOWN_GENE, e.getCode());
    }

    @Test
    void cancellingStopsReadingAndSending() {
        CancelToken token = new CancelToken();
        Recorder rec = new Recorder();
        TilePipeline.Sender<List<Integer>> cancelAfterFirst = (b, l, c) -> {
            List<Integer> r = rec.send(b, l, c);
            token.cancel();
            return r;
        };
        ServerException e = assertThrows(ServerException.class, () -> TilePipeline.builder(100,
                reader(uniform(100, 1))).batchSize(10).cancel(token).build().run(cancelAfterFirst));
        assertEquals(ErrorCodes.CANCELLED, e.getCode());
        assertEquals(1, rec.calls.size());
    }

    @Test
    void readErrorsSurfaceAsIOException() {
        TilePipeline.Reader broken = i -> {
            if (i == 3) {
                throw new IOException("tile 3 unreadable");
            }
            return reader(uniform(10, 1)).read(i);
        };
        IOException e = assertThrows(IOException.class,
                () -> TilePipeline.builder(10, broken).batchSize(2).build().run(new Recorder()));
        assertEquals("tile 3 unreadable", e.getMessage());
        assertFalse(Thread.currentThread().isInterrupted());
    }
}
