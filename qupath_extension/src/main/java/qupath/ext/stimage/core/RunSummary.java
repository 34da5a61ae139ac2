package qupath.ext.stimage.core;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** What a run did, returned by the scripting API and shown when a run ends. */
public final class RunSummary {
    private final Operation operation;
    private final int parents;
    private final int added;
    private final int removed;
    private final int skipped;
    private final int requests;
    private final long elapsedNanos;
    private final Map<String, Integer> counts;
    private final String note;
    private final Map<String, Double> predictions;

    /**
     * @param operation what ran
     * @param parents annotations (or tiles) the run covered
     * @param added objects added
     * @param removed earlier STImage objects replaced
     * @param skipped tiles not sent (too little tissue)
     * @param requests requests sent
     * @param elapsedNanos duration
     * @param counts per-class counts (cells), or null
     * @param note an extra line, or null
     */
    public RunSummary(Operation operation, int parents, int added, int removed, int skipped, int requests,
            long elapsedNanos, Map<String, Integer> counts, String note) {
        this(operation, parents, added, removed, skipped, requests, elapsedNanos, counts, note, null);
    }

    /**
     * @param operation what ran
     * @param parents annotations (or tiles) the run covered
     * @param added objects added
     * @param removed earlier STImage objects replaced
     * @param skipped tiles not sent (too little tissue)
     * @param requests requests sent
     * @param elapsedNanos duration
     * @param counts per-class counts (cells), or null
     * @param note an extra line, or null
     * @param predictions the prediction explained per target (explain of one tile), or null
     */
    public RunSummary(Operation operation, int parents, int added, int removed, int skipped, int requests,
            long elapsedNanos, Map<String, Integer> counts, String note, Map<String, Double> predictions) {
        this.operation = operation;
        this.parents = parents;
        this.added = added;
        this.removed = removed;
        this.skipped = skipped;
        this.requests = requests;
        this.elapsedNanos = elapsedNanos;
        this.counts = counts == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(counts));
        this.note = note;
        this.predictions = predictions == null ? Map.of()
                : Collections.unmodifiableMap(new LinkedHashMap<>(predictions));
    }

    /** @return what ran */
    public Operation getOperation() {
        return operation;
    }

    /** @return annotations (predict, cells) or tiles (explain) covered */
    public int getParents() {
        return parents;
    }

    /** @return objects added */
    public int getAdded() {
        return added;
    }

    /** @return earlier STImage objects replaced */
    public int getRemoved() {
        return removed;
    }

    /** @return tiles not sent */
    public int getSkipped() {
        return skipped;
    }

    /** @return requests sent */
    public int getRequests() {
        return requests;
    }

    /** @return the duration in seconds */
    public double getSeconds() {
        return elapsedNanos / 1e9;
    }

    /** @return objects added per second */
    public double getObjectsPerSecond() {
        return elapsedNanos <= 0 ? 0 : added / getSeconds();
    }

    /** @return cells per class (cells), else empty */
    public Map<String, Integer> getCounts() {
        return counts;
    }

    /**
     * @return explain of one tile: the prediction explained per target, at full precision (for a
     *     model with spatial context, sent with its neighbours: the tile's "gene: mean"); else empty
     */
    public Map<String, Double> getPredictions() {
        return predictions;
    }

    /** @return one or two sentences for the user */
    public String describe() {
        String what;
        switch (operation) {
            case PREDICT:
                what = added + " tiles with predicted expression";
                break;
            case CELLS:
                what = added + " cells";
                break;
            default:
                what = added + " nuclei with scores";
        }
        StringBuilder sb = new StringBuilder(operation.getTitle()).append(": ").append(what).append(" under ")
                .append(parents).append(operation == Operation.EXPLAIN ? " tile" : " annotation")
                .append(parents == 1 ? "" : "s").append(" in ").append(String.format("%.1f s", getSeconds()));
        if (removed > 0) {
            sb.append("; replaced ").append(removed).append(" earlier STImage objects");
        }
        if (skipped > 0) {
            sb.append("; ").append(skipped).append(" tiles skipped (too little tissue)");
        }
        sb.append('.');
        if (!counts.isEmpty()) {
            sb.append(" Counts: ").append(counts).append('.');
        }
        if (note != null) {
            sb.append(' ').append(note);
        }
        return sb.toString();
    }

    @Override
    public String toString() {
        return describe();
    }
}
