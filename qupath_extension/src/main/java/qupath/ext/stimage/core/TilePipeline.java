package qupath.ext.stimage.core;

import qupath.ext.stimage.client.CancelToken;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.ProgressListener;
import qupath.ext.stimage.client.ServerException;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Streams tiles to the backend in bounded batches: tiles are read (and encoded) on worker
 * threads a little ahead of the request in flight, tiles with too little tissue are skipped,
 * full batches are sent one request at a time, and memory holds at most about two batches.
 *
 * <p>The backend fits an image's stain normalisation on the tissue of the first request that
 * has some (per {@code image_id}); a first batch without a tissue-rich tile fails with
 * {@code no_tissue}. Such a batch is kept and sent again once a later batch has succeeded, so
 * glass-heavy starts (the top rows of a slide) do not lose their tiles. {@code busy} replies are
 * retried after the delay the backend asks for. Cancelling the token stops reading and cancels
 * the request in flight.
 *
 * <p>Pure Java: the QuPath layer supplies the {@link Reader} (ImageServer pixels) and the
 * {@link Sender} (a predict request), the tests supply fakes.
 */
public final class TilePipeline {
    /** Most batches kept while no batch has succeeded (each failed with {@code no_tissue}). */
    public static final int MAX_DEFERRED = 8;
    /** Most retries of one batch answered {@code busy}. */
    public static final int BUSY_RETRIES = 20;

    /** One tile as read: its box in full-resolution pixels, the encoded image, µm/px, tissue fraction. */
    public static final class Tile {
        private final int index;
        private final double[] box;
        private final String name;
        private final byte[] image;
        private final double mpp;
        private final double tissue;
        private final boolean contextOnly;

        /**
         * @param index the tile's position in the run
         * @param box x, y, width, height in full-resolution pixels
         * @param name object name, or null
         * @param image encoded PNG or JPEG
         * @param mpp µm per pixel of the encoded image
         * @param tissue tissue fraction 0-1
         */
        public Tile(int index, double[] box, String name, byte[] image, double mpp, double tissue) {
            this(index, box, name, image, mpp, tissue, false);
        }

        private Tile(int index, double[] box, String name, byte[] image, double mpp, double tissue,
                boolean contextOnly) {
            this.index = index;
            this.box = box.clone();
            this.name = name;
            this.image = Objects.requireNonNull(image, "image");
            this.mpp = mpp;
            this.tissue = tissue;
            this.contextOnly = contextOnly;
        }

        /**
         * @return this tile flagged {@code context_only}: sent as spatial context of the others
         *     (a model with context reads it), never predicted
         */
        public Tile asContextOnly() {
            return contextOnly ? this : new Tile(index, box, name, image, mpp, tissue, true);
        }

        /** @return whether the tile is sent only as context of the others */
        public boolean isContextOnly() {
            return contextOnly;
        }

        /** @return the tile's position in the run */
        public int getIndex() {
            return index;
        }

        /** @return x, y, width, height in full-resolution pixels */
        public double[] getBox() {
            return box.clone();
        }

        /** @return the object name, or null */
        public String getName() {
            return name;
        }

        /** @return the encoded image */
        public byte[] getImage() {
            return image;
        }

        /** @return µm per pixel of the encoded image */
        public double getMpp() {
            return mpp;
        }

        /** @return the tissue fraction, 0-1 */
        public double getTissue() {
            return tissue;
        }
    }

    /** Reads tile {@code index} of the run; called on worker threads, so it must be thread-safe. */
    @FunctionalInterface
    public interface Reader {
        /**
         * @param index 0 to count - 1
         * @return the tile, or null when the image has no pixels there (skipped)
         * @throws IOException when the pixels cannot be read
         */
        Tile read(int index) throws IOException;
    }

    /**
     * Sends one batch (on the thread that called {@link #run}).
     *
     * @param <R> what a request returns
     */
    @FunctionalInterface
    public interface Sender<R> {
        /**
         * @param batch the tiles, in run order
         * @param listener the request's progress
         * @param cancel cancels the request
         * @return the result
         * @throws ServerException the backend's error
         */
        R send(List<Tile> batch, ProgressListener listener, CancelToken cancel) throws ServerException;
    }

    /** Progress of a run, on the thread that called {@link #run}. */
    @FunctionalInterface
    public interface Progress {
        /**
         * @param done tiles predicted or skipped
         * @param total tiles of the run
         * @param message a line for a progress dialog
         */
        void update(int done, int total, String message);
    }

    /**
     * What a run did.
     *
     * @param <R> what a request returns
     */
    public static final class Result<R> {
        private final List<R> results;
        private final int sent;
        private final int skipped;
        private final int requests;
        private final int deferred;
        private final List<Long> batchNanos;
        private final long elapsedNanos;
        private final int contextSent;

        Result(List<R> results, int sent, int skipped, int requests, int deferred, List<Long> batchNanos,
                long elapsedNanos, int contextSent) {
            this.results = Collections.unmodifiableList(results);
            this.sent = sent;
            this.skipped = skipped;
            this.requests = requests;
            this.deferred = deferred;
            this.batchNanos = Collections.unmodifiableList(batchNanos);
            this.elapsedNanos = elapsedNanos;
            this.contextSent = contextSent;
        }

        /**
         * @return tiles sent as context only (a {@link ContextPlan}'s margin, and region tiles sent
         *     as context of another request's tiles), counted in every successful request
         */
        public int getContextSent() {
            return contextSent;
        }

        /** @return the results of the successful requests, in the order they completed */
        public List<R> getResults() {
            return results;
        }

        /** @return tiles sent and predicted (context-only tiles not counted) */
        public int getSent() {
            return sent;
        }

        /** @return tiles not sent (too little tissue, or no pixels) */
        public int getSkipped() {
            return skipped;
        }

        /** @return requests made, retries and deferred ones included */
        public int getRequests() {
            return requests;
        }

        /** @return batches that failed with {@code no_tissue} and were sent again later */
        public int getDeferred() {
            return deferred;
        }

        /** @return for each successful batch: the nanoseconds from its first tile read to its result */
        public List<Long> getBatchNanos() {
            return batchNanos;
        }

        /** @return the run's duration in nanoseconds */
        public long getElapsedNanos() {
            return elapsedNanos;
        }

        /** @return tiles predicted per second */
        public double getTilesPerSecond() {
            return elapsedNanos <= 0 ? 0 : sent / (elapsedNanos / 1e9);
        }
    }

    private final int count;
    private final Reader reader;
    private final int batchSize;
    private final double minTissue;
    private final int threads;
    private final CancelToken cancel;
    private final Progress progress;
    private final String verb;
    private final ContextPlan plan;
    /** tiles predicted or skipped over the run (progress): count, or a plan's region tiles */
    private final int total;

    private TilePipeline(Builder b) {
        count = b.count;
        plan = b.plan;
        if (plan != null && plan.getTiles().size() != count) {
            throw new IllegalArgumentException("the plan has " + plan.getTiles().size() + " tiles, the reader "
                    + count);
        }
        total = plan != null ? plan.getRegionCount() : count;
        reader = Objects.requireNonNull(b.reader, "reader");
        if (b.batchSize < 1) {
            throw new IllegalArgumentException("batch size must be at least 1; got " + b.batchSize);
        }
        batchSize = b.batchSize;
        minTissue = b.minTissue;
        threads = Math.max(1, b.threads);
        cancel = b.cancel != null ? b.cancel : new CancelToken();
        progress = b.progress != null ? b.progress : (d, t, m) -> { };
        verb = b.verb;
    }

    /**
     * @param count number of tiles
     * @param reader reads tile i
     * @return a builder
     */
    public static Builder builder(int count, Reader reader) {
        return new Builder(count, reader);
    }

    /**
     * Runs the pipeline.
     *
     * @param sender sends one batch
     * @param <R> what a request returns
     * @return what the run did
     * @throws ServerException the backend's error ({@code cancelled} when cancelled)
     * @throws IOException when a tile cannot be read
     * @throws StimageException when no tile has enough tissue
     */
    public <R> Result<R> run(Sender<R> sender) throws ServerException, IOException, StimageException {
        long t0 = System.nanoTime();
        State<R> s = new State<>(sender);
        ExecutorService pool = Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, "stimage-tile-reader-" + READER_THREADS.incrementAndGet());
            t.setDaemon(true);
            return t;
        });
        try {
            if (plan != null) {
                runPlan(s, pool);
                return finish(s, t0);
            }
            Deque<Future<Tile>> ahead = new ArrayDeque<>();
            int submitted = 0;
            int lookAhead = Math.max(threads, 2 * batchSize);
            long batchStart = System.nanoTime();
            for (int i = 0; i < count; i++) {
                while (submitted < count && submitted - i < lookAhead) {
                    final int k = submitted++;
                    ahead.add(pool.submit(() -> reader.read(k)));
                }
                checkCancelled();
                Tile tile = take(ahead.poll());
                if (s.batch.isEmpty()) {
                    batchStart = System.nanoTime();
                }
                if (tile == null || tile.getTissue() < minTissue) {
                    s.skipped++;
                    report(s, 0);
                } else {
                    s.batch.add(tile);
                }
                if (s.batch.size() >= batchSize) {
                    s.send(batchStart);
                }
            }
            if (!s.batch.isEmpty()) {
                s.send(batchStart);
            }
            return finish(s, t0);
        } finally {
            pool.shutdownNow();
        }
    }

    private <R> Result<R> finish(State<R> s, long t0) throws ServerException, StimageException {
        if (!s.deferredBatches.isEmpty()) {
            throw s.lastNoTissue;
        }
        if (s.sent == 0) {
            throw new StimageException("No tissue", "None of the " + total + " tiles has "
                    + Math.round(minTissue * 100) + "% tissue or more, so nothing was sent. Select a region "
                    + "on tissue, or lower the minimum tissue fraction (option 'minTissue').");
        }
        return new Result<>(s.results, s.sent, s.skipped, s.requests, s.deferredCount, s.batchNanos,
                System.nanoTime() - t0, s.contextSent);
    }

    /**
     * A {@link ContextPlan}'s requests in order: each request's tiles are read (those of the next
     * request meanwhile, a tile shared by both read once); its tiles under the minimum tissue
     * are not sent (a region tile among them counts as skipped); a request left without a tile
     * to predict is not sent.
     */
    private <R> void runPlan(State<R> s, ExecutorService pool) throws ServerException, IOException {
        List<ContextPlan.Request> qs = plan.getRequests();
        if (qs.isEmpty()) {
            return;
        }
        Map<Integer, Future<Tile>> current = submit(qs.get(0), Map.of(), pool);
        for (int k = 0; k < qs.size(); k++) {
            ContextPlan.Request q = qs.get(k);
            Map<Integer, Future<Tile>> next = k + 1 < qs.size() ? submit(qs.get(k + 1), current, pool) : Map.of();
            long batchStart = System.nanoTime();
            for (int i : q.getPredicted()) {
                checkCancelled();
                Tile t = take(current.get(i));
                if (t == null || t.getTissue() < minTissue) {
                    s.skipped++;
                    report(s, 0);
                } else {
                    s.batch.add(t);
                }
            }
            boolean any = !s.batch.isEmpty();
            for (int i : q.getContext()) {
                checkCancelled();
                Tile t = take(current.get(i));
                if (any && t != null && t.getTissue() >= minTissue) {
                    s.batch.add(t.asContextOnly());
                }
            }
            if (any) {
                s.send(batchStart);
            }
            s.batch.clear();
            current = next;
        }
    }

    /** Reads of a request's tiles: those already under way for the previous request are reused. */
    private Map<Integer, Future<Tile>> submit(ContextPlan.Request q, Map<Integer, Future<Tile>> reuse,
            ExecutorService pool) {
        Map<Integer, Future<Tile>> out = new HashMap<>();
        for (int[] part : new int[][] {q.getPredicted(), q.getContext()}) {
            for (int i : part) {
                Future<Tile> f = reuse.get(i);
                out.put(i, f != null ? f : pool.submit(() -> reader.read(i)));
            }
        }
        return out;
    }

    private static final AtomicInteger READER_THREADS = new AtomicInteger();

    private Tile take(Future<Tile> f) throws IOException, ServerException {
        try {
            return f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            cancel.cancel();
            throw cancelled();
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof IOException) {
                throw (IOException) c;
            }
            if (c instanceof UncheckedIOException) {
                throw ((UncheckedIOException) c).getCause();
            }
            if (c instanceof RuntimeException) {
                throw (RuntimeException) c;
            }
            if (c instanceof Error) {
                throw (Error) c;
            }
            throw new IOException(c);
        }
    }

    private void checkCancelled() throws ServerException {
        if (cancel.isCancelled()) {
            throw cancelled();
        }
    }

    private static ServerException cancelled() {
        return new ServerException(ErrorCodes.CANCELLED, "cancelled by the user");
    }

    private void report(State<?> s, int inFlight) {
        int done = s.sent + s.skipped + inFlight;
        StringBuilder m = new StringBuilder(verb).append(": ").append(Math.min(done, total)).append(" of ")
                .append(total).append(" tiles");
        if (s.skipped > 0) {
            m.append(" (").append(s.skipped).append(" skipped: under ").append(Math.round(minTissue * 100))
                    .append("% tissue)");
        }
        if (s.contextSent > 0) {
            m.append(", with ").append(s.contextSent).append(" context tiles around them");
        }
        progress.update(Math.min(done, total), total, m.toString());
    }

    /** The mutable state of one run. */
    private final class State<R> {
        final Sender<R> sender;
        final List<R> results = new ArrayList<>();
        final List<Tile> batch = new ArrayList<>();
        final List<List<Tile>> deferredBatches = new ArrayList<>();
        final List<Long> batchNanos = new ArrayList<>();
        ServerException lastNoTissue;
        int sent;
        int skipped;
        int requests;
        int deferredCount;
        int contextSent;

        State(Sender<R> sender) {
            this.sender = sender;
        }

        void send(long batchStart) throws ServerException {
            List<Tile> b = new ArrayList<>(batch);
            batch.clear();
            boolean ok = sendOne(b, true);
            if (ok) {
                batchNanos.add(System.nanoTime() - batchStart);
                if (!deferredBatches.isEmpty()) {
                    List<List<Tile>> again = new ArrayList<>(deferredBatches);
                    deferredBatches.clear();
                    for (List<Tile> d : again) {
                        sendOne(d, false);
                    }
                }
            }
        }

        /** @return whether the batch succeeded (false: deferred) */
        boolean sendOne(List<Tile> b, boolean mayDefer) throws ServerException {
            int retries = 0;
            while (true) {
                checkCancelled();
                requests++;
                int context = 0;
                for (Tile t : b) {
                    context += t.isContextOnly() ? 1 : 0;
                }
                int predicted = b.size() - context;
                try {
                    R r = sender.send(Collections.unmodifiableList(b),
                            (stage, done, all) -> report(this, (int) ((long) Math.min(done, all) * predicted
                                    / Math.max(1, all))), cancel);
                    results.add(r);
                    sent += predicted;
                    contextSent += context;
                    report(this, 0);
                    return true;
                } catch (ServerException e) {
                    if (ErrorCodes.BUSY.equals(e.getCode()) && retries < BUSY_RETRIES) {
                        retries++;
                        sleep(retryAfter(e));
                        continue;
                    }
                    if (ErrorCodes.NO_TISSUE.equals(e.getCode()) && mayDefer && results.isEmpty()
                            && deferredBatches.size() < MAX_DEFERRED) {
                        deferredBatches.add(b);
                        deferredCount++;
                        lastNoTissue = e;
                        return false;
                    }
                    throw e;
                }
            }
        }
    }

    private static long retryAfter(ServerException e) {
        try {
            if (e.getDetails().has("retry_after_ms")) {
                return Math.max(10, Math.min(10_000, e.getDetails().get("retry_after_ms").getAsLong()));
            }
        } catch (RuntimeException ignored) {
            // default below
        }
        return 500;
    }

    private void sleep(long ms) throws ServerException {
        long end = System.nanoTime() + ms * 1_000_000L;
        while (System.nanoTime() < end) {
            checkCancelled();
            try {
                Thread.sleep(Math.min(50, Math.max(1, (end - System.nanoTime()) / 1_000_000L)));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                cancel.cancel();
                throw cancelled();
            }
        }
    }

    /** Builds a {@link TilePipeline}. */
    public static final class Builder {
        private final int count;
        private final Reader reader;
        private int batchSize = PredictOptions.DEFAULT_BATCH_SIZE;
        private double minTissue;
        private int threads = 2;
        private CancelToken cancel;
        private Progress progress;
        private String verb = "Predicting";
        private ContextPlan plan;

        private Builder(int count, Reader reader) {
            if (count < 0) {
                throw new IllegalArgumentException("count must not be negative");
            }
            this.count = count;
            this.reader = reader;
        }

        /**
         * @param batchSize tiles per request
         * @return this
         */
        public Builder batchSize(int batchSize) {
            this.batchSize = batchSize;
            return this;
        }

        /**
         * @param minTissue tiles with less tissue are skipped (0: none)
         * @return this
         */
        public Builder minTissue(double minTissue) {
            this.minTissue = minTissue;
            return this;
        }

        /**
         * @param threads reader threads (default 2)
         * @return this
         */
        public Builder threads(int threads) {
            this.threads = threads;
            return this;
        }

        /**
         * @param cancel cancels the run
         * @return this
         */
        public Builder cancel(CancelToken cancel) {
            this.cancel = cancel;
            return this;
        }

        /**
         * @param progress receives progress
         * @return this
         */
        public Builder progress(Progress progress) {
            this.progress = progress;
            return this;
        }

        /**
         * @param verb the word progress lines start with (default "Predicting")
         * @return this
         */
        public Builder verb(String verb) {
            this.verb = verb;
            return this;
        }

        /**
         * Sends a model with spatial context its tiles as planned: each request of the plan holds
         * the tiles it predicts and the tiles around them, flagged context only. The reader reads
         * the plan's tiles (region tiles, then margin tiles); the batch size is not used.
         *
         * @param plan the plan, or null for batches of consecutive tiles
         * @return this
         */
        public Builder plan(ContextPlan plan) {
            this.plan = plan;
            return this;
        }

        /** @return the pipeline */
        public TilePipeline build() {
            return new TilePipeline(this);
        }
    }
}
