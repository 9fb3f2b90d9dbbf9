using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace Coordinator.Testing.Glance;

/// <summary>
/// The bytes of a test image: deterministic pseudo-random content keyed by (id, seed), produced by offset.
/// Byte <c>i</c> of an image is byte <c>i % 8</c> (little-endian) of <c>splitmix64(key + (i / 8 + 1) * φ)</c>, so any
/// range can be generated on its own, without generating what comes before it, and nothing is ever held in memory
/// beyond the chunk being produced.
/// </summary>
public static class GlanceContent
{
    /// <summary>Size of the chunks <see cref="Content"/> yields and the server writes.</summary>
    public const int ChunkSize = 64 * 1024;

    private const ulong Golden = 0x9E3779B97F4A7C15UL;

    private static readonly ConcurrentDictionary<(string Id, int Seed, long Size), (string Md5, string Sha512)> HashCache = new();

    /// <summary>The generator key of an image: stable across processes and platforms (FNV-1a of the UTF-8 id, mixed with the seed).</summary>
    public static ulong Key(string id, int seed)
    {
        ArgumentNullException.ThrowIfNull(id);
        var hash = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(id))
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }
        return Mix(hash ^ Mix((uint)seed + Golden));
    }

    /// <summary>Fills <paramref name="destination"/> with the image bytes that start at <paramref name="offset"/>.</summary>
    public static void Fill(string id, int seed, long offset, Span<byte> destination) => Fill(Key(id, seed), offset, destination);

    /// <summary>Fills <paramref name="destination"/> with the bytes that start at <paramref name="offset"/> of the content with <paramref name="key"/>.</summary>
    public static void Fill(ulong key, long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        var word = offset >> 3;
        var skip = (int)(offset & 7);
        Span<byte> partial = stackalloc byte[8];
        if (skip != 0 && destination.Length > 0)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(partial, Word(key, word));
            var n = Math.Min(8 - skip, destination.Length);
            partial.Slice(skip, n).CopyTo(destination);
            destination = destination[n..];
            word++;
        }

        var whole = destination.Length >> 3;
        var words = MemoryMarshal.Cast<byte, ulong>(destination[..(whole * 8)]);
        var state = key + (ulong)(word + 1) * Golden;
        if (BitConverter.IsLittleEndian)
        {
            for (var i = 0; i < words.Length; i++, state += Golden)
                words[i] = Mix(state);
        }
        else
        {
            for (var i = 0; i < words.Length; i++, state += Golden)
                words[i] = BinaryPrimitives.ReverseEndianness(Mix(state));
        }
        word += whole;
        destination = destination[(whole * 8)..];

        if (destination.Length > 0)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(partial, Word(key, word));
            partial[..destination.Length].CopyTo(destination);
        }
    }

    /// <summary>
    /// The content of an image as consecutive chunks of <paramref name="chunkSize"/> bytes (the last one shorter).
    /// Each chunk is a fresh array: chunks stay valid after the enumeration moves on.
    /// </summary>
    public static IEnumerable<ReadOnlyMemory<byte>> Content(string id, long sizeBytes, int seed = 0, int chunkSize = ChunkSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sizeBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkSize);
        var key = Key(id, seed);
        return Iterate();

        IEnumerable<ReadOnlyMemory<byte>> Iterate()
        {
            for (long offset = 0; offset < sizeBytes; offset += chunkSize)
            {
                var chunk = new byte[(int)Math.Min(chunkSize, sizeBytes - offset)];
                Fill(key, offset, chunk);
                yield return chunk;
            }
        }
    }

    /// <summary>A read-only, seekable stream over the content of an image: nothing is buffered beyond the caller's reads.</summary>
    public static Stream OpenContent(string id, long sizeBytes, int seed = 0) => new ContentStream(Key(id, seed), sizeBytes);

    /// <summary>
    /// MD5 and SHA-512 of the content (lowercase hex), computed by generating it once in chunks.
    /// Results are cached per (id, seed, size) for the life of the process.
    /// </summary>
    public static (string Md5, string Sha512) ComputeHashes(string id, long sizeBytes, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentOutOfRangeException.ThrowIfNegative(sizeBytes);
        return HashCache.GetOrAdd((id, seed, sizeBytes), static k => Hash(Key(k.Id, k.Seed), k.Size));
    }

    /// <summary>
    /// Compares a stream (e.g. a downloaded file) with the expected content. Returns the offset of the first byte that
    /// differs, the shorter length if one is a prefix of the other, or -1 if they are identical.
    /// </summary>
    public static async Task<long> FirstMismatchAsync(Stream actual, string id, long sizeBytes, int seed = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(actual);
        var key = Key(id, seed);
        var got = ArrayPool<byte>.Shared.Rent(ChunkSize);
        var want = ArrayPool<byte>.Shared.Rent(ChunkSize);
        try
        {
            long offset = 0;
            while (true)
            {
                var n = await actual.ReadAtLeastAsync(got.AsMemory(0, ChunkSize), ChunkSize, throwOnEndOfStream: false, cancellationToken);
                var expected = (int)Math.Min(n, sizeBytes - offset);
                Fill(key, offset, want.AsSpan(0, expected));
                var common = got.AsSpan(0, expected).CommonPrefixLength(want.AsSpan(0, expected));
                if (common < expected)
                    return offset + common;
                if (n > expected)
                    return sizeBytes; // the stream is longer than the image
                offset += n;
                if (n < ChunkSize)
                    return offset == sizeBytes ? -1 : offset; // end of stream: -1, or it is a strict prefix
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(got);
            ArrayPool<byte>.Shared.Return(want);
        }
    }

    private static (string Md5, string Sha512) Hash(ulong key, long size)
    {
        // Generating is much cheaper than hashing: hash MD5 and SHA-512 on two threads over 1 MiB blocks,
        // generating the next block while the current one is hashed.
        const int block = 1024 * 1024;
        using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        using var sha512 = IncrementalHash.CreateHash(HashAlgorithmName.SHA512);
        var current = new byte[block];
        var next = new byte[block];
        long offset = 0;
        var length = (int)Math.Min(block, size);
        Fill(key, 0, current.AsSpan(0, length));
        while (length > 0)
        {
            var buffer = current;
            var n = length;
            var md5Task = Task.Run(() => md5.AppendData(buffer, 0, n));
            offset += n;
            length = (int)Math.Min(block, size - offset);
            Fill(key, offset, next.AsSpan(0, length));
            sha512.AppendData(buffer, 0, n);
            md5Task.GetAwaiter().GetResult();
            (current, next) = (next, current);
        }
        return (Convert.ToHexStringLower(md5.GetHashAndReset()), Convert.ToHexStringLower(sha512.GetHashAndReset()));
    }

    private static ulong Word(ulong key, long index) => Mix(key + (ulong)(index + 1) * Golden);

    // The splitmix64 finaliser.
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private sealed class ContentStream(ulong key, long length) : Stream
    {
        private long _position;

        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => length;

        public override long Position
        {
            get => _position;
            set
            {
                ArgumentOutOfRangeException.ThrowIfNegative(value);
                _position = value;
            }
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = (int)Math.Clamp(length - _position, 0, buffer.Length);
            Fill(key, _position, buffer[..n]);
            _position += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            cancellationToken.IsCancellationRequested ? ValueTask.FromCanceled<int>(cancellationToken) : new(Read(buffer.Span));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            SeekOrigin.End => length + offset,
            _ => throw new ArgumentOutOfRangeException(nameof(origin)),
        };

        public override void Flush() { }
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
