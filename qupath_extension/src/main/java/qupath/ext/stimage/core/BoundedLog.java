package qupath.ext.stimage.core;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;

/**
 * The last lines of a process's output, kept in memory (a ring buffer: the oldest line goes when
 * a new one would exceed the limit; overlong lines are cut). Thread-safe.
 */
public final class BoundedLog {
    /** Longest line kept; the rest of a longer line is replaced by an ellipsis. */
    public static final int MAX_LINE_CHARS = 2000;

    private final int maxLines;
    private final ArrayDeque<String> lines;
    private long dropped;

    /**
     * @param maxLines how many lines to keep (at least 1)
     */
    public BoundedLog(int maxLines) {
        if (maxLines < 1) {
            throw new IllegalArgumentException("maxLines must be at least 1; got " + maxLines);
        }
        this.maxLines = maxLines;
        this.lines = new ArrayDeque<>(Math.min(maxLines, 1024));
    }

    /**
     * @param line a line (without its line terminator)
     * @return the line as kept (cut to {@link #MAX_LINE_CHARS})
     */
    public synchronized String add(String line) {
        String l = line.length() > MAX_LINE_CHARS ? line.substring(0, MAX_LINE_CHARS) + " …" : line;
        if (lines.size() == maxLines) {
            lines.removeFirst();
            dropped++;
        }
        lines.addLast(l);
        return l;
    }

    /**
     * @param n how many lines
     * @return the last {@code n} lines (fewer when fewer were kept), oldest first
     */
    public synchronized List<String> tail(int n) {
        List<String> all = new ArrayList<>(lines);
        return new ArrayList<>(all.subList(Math.max(0, all.size() - Math.max(0, n)), all.size()));
    }

    /** @return every line kept, oldest first */
    public synchronized List<String> lines() {
        return new ArrayList<>(lines);
    }

    /** @return how many lines went to make room for newer ones */
    public synchronized long dropped() {
        return dropped;
    }

    /** Forgets every line. */
    public synchronized void clear() {
        lines.clear();
        dropped = 0;
    }
}
