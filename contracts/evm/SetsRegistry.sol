// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title SETS write-once registry of CTI hashes, version 2: per-writer anchors, writers bound to
///        collections and (optionally) to producer identities
/// @notice The "DataStorage" contract of the SETS paper (§4.1, WriteCTIHash / ReadCTIHash):
///         a write-once map from a 32-byte key k (derived from the object's metadata m_t:
///         collection id, object id, version) to the SHA-256 hash h_t of the STIX object.
///         Only hashes are stored, never the object itself (privacy, right to be forgotten).
/// @dev    Rules:
///         - One anchor per (key, writer). A writer can never block, overwrite or pre-empt another
///           writer's anchor under the same key (no key squatting); a reader gets every anchor
///           under a key and decides whose word counts.
///         - Writers are granted per *scope*: a collection scope (sha256 of the JCS of
///           [collectionId], computed off chain) or ANY_SCOPE (every collection). A write names
///           its scope (never ANY_SCOPE) and reverts unless the writer is granted that scope or
///           ANY_SCOPE. (The chain cannot tell which collection a key belongs to — a key is a
///           hash — so the scope named at write time is recorded in the event only; what counts
///           is the reader's check below.)
///         - Producer identities (optional): the admin may bind a STIX identity (a tag computed
///           off chain from `created_by_ref`) to the accounts that speak for it. Once an identity
///           has at least one account bound, only those accounts are entitled for objects that
///           name it as creator.
///         - An anchor is *entitled* for (scope, identity) when its writer is granted that scope
///           (or ANY_SCOPE) now, and — if identity is non-zero and bound to any account — is bound
///           to it now. Revoking withdraws a writer's word; the anchor itself stays.
///         - Write-once per writer: no function can overwrite or delete an anchored hash; the
///           zero hash is rejected (it means "absent").
///         - writeCTIHash reverts with KeyTaken when this writer already anchored the key,
///           whatever the hash.
///         - writeCTIHashes is all-or-nothing with one exception that makes retries safe: a key
///           where this writer already holds the *identical* hash (anchored earlier, or earlier
///           in the same batch) is skipped without an event; a different hash reverts the whole
///           batch with KeyTaken, so nothing is half-written.
///         - The admin (the deployer) grants and revokes writers and identity bindings and hands
///           the role over in two steps (proposeAdmin, then acceptAdmin by the proposed account).
///           The admin is not a writer unless granted.
contract SetsRegistry {
    /// @dev Two storage slots, as in version 1: the hash, then writer (20 bytes) + timestamp
    ///      (8 bytes) + block number (4 bytes; a hint for finding the transaction, it wraps after
    ///      2^32 blocks). The first anchor of a key costs what it did in version 1; only further
    ///      writers of the same key (rare: re-publishers, or a conflict) pay for a list entry.
    struct Anchor {
        bytes32 hash;
        address writer;
        uint64 timestamp;
        uint32 blockNumber;
    }

    /// @notice The scope "every collection". Granted, it lets a writer write in any collection;
    ///         a write itself always names a collection scope.
    bytes32 public constant ANY_SCOPE = bytes32(0);

    /// @notice Current admin: grants and revokes writers, may propose a successor.
    address public admin;

    /// @notice The account proposed as the next admin (zero when none); it must acceptAdmin.
    address public pendingAdmin;

    /// @notice scope → account → granted.
    mapping(bytes32 => mapping(address => bool)) public isWriterFor;

    /// @notice The number of scopes granted to an account (ANY_SCOPE counts as one), so that a
    ///         connection test can say "granted nothing".
    mapping(address => uint256) public grantsOf;

    /// @notice identity tag → account → bound (may speak for that producer identity).
    mapping(bytes32 => mapping(address => bool)) public isBoundTo;

    /// @notice identity tag → number of accounts bound to it (0: the identity is not bound, any
    ///         writer entitled for the collection may vouch for its objects).
    mapping(bytes32 => uint256) public bindingsOf;

    /// @dev key → the first anchor under it
    mapping(bytes32 => Anchor) private firstAnchor;

    /// @dev key → anchors by further writers, in write order
    mapping(bytes32 => Anchor[]) private laterAnchors;

    /// @notice A hash was anchored under a key by a writer, for a scope.
    event CTIHashWritten(bytes32 indexed key, bytes32 indexed scope, bytes32 hash, address indexed writer);
    event WriterGranted(address indexed account, bytes32 indexed scope);
    event WriterRevoked(address indexed account, bytes32 indexed scope);
    event IdentityBound(bytes32 indexed identity, address indexed account);
    event IdentityUnbound(bytes32 indexed identity, address indexed account);
    event AdminProposed(address indexed admin, address indexed proposed);
    event AdminTransferred(address indexed previousAdmin, address indexed newAdmin);

    /// @notice This writer already anchored a hash under the key (write-once per writer).
    error KeyTaken(bytes32 key, address writer);
    /// @notice The caller is granted neither `scope` nor ANY_SCOPE.
    error NotWriter(address account, bytes32 scope);
    /// @notice The caller is not the admin.
    error NotAdmin(address account);
    /// @notice The caller is not the proposed admin.
    error NotPendingAdmin(address account);
    /// @notice The zero hash cannot be anchored.
    error ZeroHash(bytes32 key);
    /// @notice A write must name a collection scope, not ANY_SCOPE; an identity tag cannot be zero.
    error ZeroScope();
    /// @notice The arrays of a batch (or of the constructor) differ in length.
    error LengthMismatch();
    /// @notice The zero address cannot be a writer.
    error ZeroAddress();

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    /// @param writers accounts authorised to write from the start (may be empty)
    /// @param scopes  the scope granted to each of `writers` (same length; ANY_SCOPE allowed)
    constructor(address[] memory writers, bytes32[] memory scopes) {
        if (writers.length != scopes.length) revert LengthMismatch();
        admin = msg.sender;
        emit AdminTransferred(address(0), msg.sender);
        for (uint256 i = 0; i < writers.length; i++) {
            _grant(writers[i], scopes[i]);
        }
    }

    /// @notice Whether `account` may write (and is entitled to vouch) in collection scope `scope`.
    function canWrite(bytes32 scope, address account) public view returns (bool) {
        return scope != ANY_SCOPE && (isWriterFor[scope][account] || isWriterFor[ANY_SCOPE][account]);
    }

    /// @notice Whether an anchor by `account` counts for objects of collection `scope` whose
    ///         creator has identity tag `identity` (zero: no creator named).
    function isEntitled(bytes32 scope, bytes32 identity, address account) public view returns (bool) {
        if (!canWrite(scope, account)) return false;
        return identity == bytes32(0) || bindingsOf[identity] == 0 || isBoundTo[identity][account];
    }

    /// @notice Anchor `hash` under `key` for collection `scope`. Reverts with KeyTaken if this
    ///         writer already anchored the key.
    function writeCTIHash(bytes32 scope, bytes32 key, bytes32 hash) external {
        if (scope == ANY_SCOPE) revert ZeroScope();
        if (!canWrite(scope, msg.sender)) revert NotWriter(msg.sender, scope);
        if (hash == bytes32(0)) revert ZeroHash(key);
        if (_held(key, msg.sender) != bytes32(0)) revert KeyTaken(key, msg.sender);
        _write(scope, key, hash);
    }

    /// @notice Anchor many (scope, key, hash) triples in one transaction. All-or-nothing, except
    ///         that keys where this writer already holds the identical hash are skipped.
    function writeCTIHashes(bytes32[] calldata scopes, bytes32[] calldata keys, bytes32[] calldata hashes) external {
        if (keys.length != hashes.length || keys.length != scopes.length) revert LengthMismatch();
        bool anyScope = isWriterFor[ANY_SCOPE][msg.sender];
        bytes32 lastScope; // the scope checked last (batches are usually one collection)
        for (uint256 i = 0; i < keys.length; i++) {
            bytes32 scope = scopes[i];
            bytes32 key = keys[i];
            bytes32 hash = hashes[i];
            if (scope == ANY_SCOPE) revert ZeroScope();
            if (!anyScope && scope != lastScope) {
                if (!isWriterFor[scope][msg.sender]) revert NotWriter(msg.sender, scope);
                lastScope = scope;
            }
            if (hash == bytes32(0)) revert ZeroHash(key);
            bytes32 existing = _held(key, msg.sender);
            if (existing == bytes32(0)) {
                _write(scope, key, hash);
            } else if (existing != hash) {
                revert KeyTaken(key, msg.sender);
            }
        }
    }

    /// @notice Every anchor under `key`, in write order, each flagged `entitled` for collection
    ///         `scope` and creator `identity` (zero: none) as isEntitled judges it now.
    function readCTIRecords(bytes32 scope, bytes32 identity, bytes32 key)
        external
        view
        returns (
            address[] memory writers,
            bytes32[] memory hashes,
            uint64[] memory timestamps,
            uint32[] memory blocks,
            bool[] memory entitled
        )
    {
        Anchor storage first = firstAnchor[key];
        if (first.hash == bytes32(0)) {
            return (new address[](0), new bytes32[](0), new uint64[](0), new uint32[](0), new bool[](0));
        }
        Anchor[] storage later = laterAnchors[key];
        uint256 n = 1 + later.length;
        writers = new address[](n);
        hashes = new bytes32[](n);
        timestamps = new uint64[](n);
        blocks = new uint32[](n);
        entitled = new bool[](n);
        for (uint256 i = 0; i < n; i++) {
            Anchor storage a = i == 0 ? first : later[i - 1];
            writers[i] = a.writer;
            hashes[i] = a.hash;
            timestamps[i] = a.timestamp;
            blocks[i] = a.blockNumber;
            entitled[i] = isEntitled(scope, identity, a.writer);
        }
    }

    /// @notice One anchor as readCTIRecordsMany returns it.
    struct Record {
        address writer;
        bytes32 hash;
        uint64 timestamp;
        uint32 blockNumber;
        bool entitled;
    }

    /// @notice readCTIRecords for many (scope, identity, key) queries in one call (batched
    ///         verification). The anchors of query i are the next `counts[i]` entries of
    ///         `records`, in write order, each judged for that query's scope and identity.
    function readCTIRecordsMany(bytes32[] calldata scopes, bytes32[] calldata identities, bytes32[] calldata keys)
        external
        view
        returns (uint256[] memory counts, Record[] memory records)
    {
        if (keys.length != scopes.length || keys.length != identities.length) revert LengthMismatch();
        counts = new uint256[](keys.length);
        uint256 total = 0;
        for (uint256 q = 0; q < keys.length; q++) {
            uint256 n = firstAnchor[keys[q]].hash == bytes32(0) ? 0 : 1 + laterAnchors[keys[q]].length;
            counts[q] = n;
            total += n;
        }
        records = new Record[](total);
        // a batch is mostly one collection, one writer: the last judgement is reused
        Judged memory last;
        uint256 j = 0;
        for (uint256 q = 0; q < keys.length; q++) {
            if (counts[q] > 0) j = _fill(records, j, last, scopes[q], identities[q], keys[q]);
        }
    }

    /// @dev Write the anchors under `key` into `records` from index `j` on; returns the next index.
    function _fill(Record[] memory records, uint256 j, Judged memory last, bytes32 scope, bytes32 identity, bytes32 key)
        private
        view
        returns (uint256)
    {
        Anchor[] storage later = laterAnchors[key];
        uint256 n = 1 + later.length;
        for (uint256 i = 0; i < n; i++) {
            Anchor storage a = i == 0 ? firstAnchor[key] : later[i - 1];
            records[j++] = Record(a.writer, a.hash, a.timestamp, a.blockNumber, _judge(last, scope, identity, a.writer));
        }
        return j;
    }

    /// @dev isEntitled, unless `last` judged the same question (then its answer); `last` is updated.
    function _judge(Judged memory last, bytes32 scope, bytes32 identity, address writer) private view returns (bool) {
        if (!last.valid || last.writer != writer || last.scope != scope || last.identity != identity) {
            last.valid = true;
            last.writer = writer;
            last.scope = scope;
            last.identity = identity;
            last.entitled = isEntitled(scope, identity, writer);
        }
        return last.entitled;
    }

    /// @dev readCTIRecordsMany's last entitlement judgement.
    struct Judged {
        bool valid;
        address writer;
        bytes32 scope;
        bytes32 identity;
        bool entitled;
    }

    /// @notice What `writer` anchored under `key`; all zero when it anchored nothing.
    function readCTIRecord(bytes32 key, address writer) external view returns (bytes32 hash, uint64 timestamp, uint32 blockNumber) {
        Anchor storage first = firstAnchor[key];
        if (first.hash == bytes32(0)) return (bytes32(0), 0, 0);
        if (first.writer == writer) return (first.hash, first.timestamp, first.blockNumber);
        Anchor[] storage later = laterAnchors[key];
        for (uint256 i = 0; i < later.length; i++) {
            if (later[i].writer == writer) return (later[i].hash, later[i].timestamp, later[i].blockNumber);
        }
        return (bytes32(0), 0, 0);
    }

    /// @notice Authorise `account` to write in `scope` (ANY_SCOPE: every collection).
    function grantWriter(address account, bytes32 scope) external onlyAdmin {
        _grant(account, scope);
    }

    /// @notice Withdraw `account`'s grant of `scope`. Its anchors stay, but no longer count there.
    function revokeWriter(address account, bytes32 scope) external onlyAdmin {
        if (isWriterFor[scope][account]) {
            isWriterFor[scope][account] = false;
            grantsOf[account] -= 1;
            emit WriterRevoked(account, scope);
        }
    }

    /// @notice Let `account` speak for producer identity `identity`. From the first binding on,
    ///         only bound accounts are entitled for objects naming that identity as creator.
    function bindIdentity(bytes32 identity, address account) external onlyAdmin {
        if (identity == bytes32(0)) revert ZeroScope();
        if (account == address(0)) revert ZeroAddress();
        if (!isBoundTo[identity][account]) {
            isBoundTo[identity][account] = true;
            bindingsOf[identity] += 1;
            emit IdentityBound(identity, account);
        }
    }

    /// @notice Withdraw a binding. With none left, the identity is unbound again.
    function unbindIdentity(bytes32 identity, address account) external onlyAdmin {
        if (isBoundTo[identity][account]) {
            isBoundTo[identity][account] = false;
            bindingsOf[identity] -= 1;
            emit IdentityUnbound(identity, account);
        }
    }

    /// @notice Step one of handing the admin role over: name the successor (address(0) cancels).
    function proposeAdmin(address proposed) external onlyAdmin {
        pendingAdmin = proposed;
        emit AdminProposed(msg.sender, proposed);
    }

    /// @notice Step two: the proposed account takes the role.
    function acceptAdmin() external {
        if (msg.sender != pendingAdmin || msg.sender == address(0)) revert NotPendingAdmin(msg.sender);
        emit AdminTransferred(admin, msg.sender);
        admin = msg.sender;
        pendingAdmin = address(0);
    }

    function _grant(address account, bytes32 scope) private {
        if (account == address(0)) revert ZeroAddress();
        if (!isWriterFor[scope][account]) {
            isWriterFor[scope][account] = true;
            grantsOf[account] += 1;
            emit WriterGranted(account, scope);
        }
    }

    /// @dev The hash `writer` holds under `key` (zero when none).
    function _held(bytes32 key, address writer) private view returns (bytes32) {
        Anchor storage first = firstAnchor[key];
        if (first.hash == bytes32(0)) return bytes32(0);
        if (first.writer == writer) return first.hash;
        Anchor[] storage later = laterAnchors[key];
        for (uint256 i = 0; i < later.length; i++) {
            if (later[i].writer == writer) return later[i].hash;
        }
        return bytes32(0);
    }

    function _write(bytes32 scope, bytes32 key, bytes32 hash) private {
        Anchor memory a = Anchor(hash, msg.sender, uint64(block.timestamp), uint32(block.number));
        if (firstAnchor[key].hash == bytes32(0)) firstAnchor[key] = a;
        else laterAnchors[key].push(a);
        emit CTIHashWritten(key, scope, hash, msg.sender);
    }
}
