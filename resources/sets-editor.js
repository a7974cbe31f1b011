/* global window, RED, $ */
/*
 * SETS editor helpers, shared by the dialogs of node-red-contrib-sets (served by Node-RED at
 * resources/node-red-contrib-sets/sets-editor.js; each node's .html loads it with a <script src>).
 *
 *   SETS_EDITOR.addTestButton(kind, node[, opts])
 *       In a config node's oneditprepare: appends a "Test connection" row to the dialog.
 *       kind: 'ledger' | 'broker' | 'taxii' | 'store'. opts.prefix: the inputs' id prefix
 *       (default 'node-config-input-'); opts.container: where the row goes (default: the form of
 *       the dialog that holds #<prefix>name); opts.values(): extra/overriding config values.
 *   SETS_EDITOR.testConnection(kind, node, $button, $result[, opts])
 *       Collects the dialog's current values (credentials typed but not saved included; a saved
 *       password shows as __PWRD__ and the runtime uses the saved one) and POSTs them to
 *       sets/probe/<kind>; shows a spinner, then a green or red line with the runtime's message.
 *   SETS_EDITOR.collectionInput(node[, opts])
 *       In a flow node's oneditprepare: turns #node-input-collection into a typedInput
 *       (str | msg | flow | env, type kept in #node-input-collectionType) with a "pick" button that
 *       lists the collections of the TAXII server selected in #node-input-server (or opts.server());
 *       opts.pick === false: the typedInput only (nodes without a TAXII server); opts.needs
 *       'read' | 'write' greys out collections the server's user cannot use that way.
 *   SETS_EDITOR.collectionLabel(node): "91a7b528-…" or "msg.collection" for a node label.
 *
 * Everything a user sees is set with .text(): no server message is ever parsed as HTML.
 */
(function () {
    'use strict';
    if (window.SETS_EDITOR) return;

    var SAVED_PASSWORD = '__PWRD__';
    var TIMEOUT_MS = 30000;

    function inputValue($el) {
        if ($el.is(':checkbox')) return $el.is(':checked');
        return $el.val();
    }

    /** The config values and credentials of `node` as its open dialog holds them now. */
    function dialogValues(node, prefix) {
        var def = node._def || {};
        var config = {};
        var credentials = {};
        Object.keys(def.defaults || {}).forEach(function (k) {
            var $el = $('#' + prefix + k);
            config[k] = $el.length ? inputValue($el) : node[k];
        });
        Object.keys(def.credentials || {}).forEach(function (k) {
            var $el = $('#' + prefix + k);
            if ($el.length) {
                credentials[k] = $el.val();
            } else if (node.credentials && typeof node.credentials[k] === 'string') {
                credentials[k] = node.credentials[k];
            }
        });
        return { config: config, credentials: credentials };
    }

    /** The saved values of a config node (not open in a dialog): what the editor holds for it. */
    function savedValues(node) {
        var def = node._def || {};
        var config = {};
        var credentials = {};
        Object.keys(def.defaults || {}).forEach(function (k) { config[k] = node[k]; });
        Object.keys(def.credentials || {}).forEach(function (k) {
            var c = node.credentials || {};
            if (typeof c[k] === 'string' && c[k] !== '') credentials[k] = c[k];
            else if (c['has_' + k]) credentials[k] = SAVED_PASSWORD;
        });
        return { config: config, credentials: credentials };
    }

    function post(url, body) {
        return $.ajax({
            url: url,
            type: 'POST',
            contentType: 'application/json; charset=utf-8',
            dataType: 'json',
            data: JSON.stringify(body),
            timeout: TIMEOUT_MS,
        });
    }

    function failureText(xhr, status) {
        if (xhr && xhr.responseJSON && xhr.responseJSON.message) return xhr.responseJSON.message;
        if (xhr && xhr.status === 401) return 'not permitted: your editor login lacks the sets.write permission';
        if (status === 'timeout') return 'no answer from Node-RED within ' + TIMEOUT_MS / 1000 + ' s';
        return 'request failed' + (xhr && xhr.status ? ' (HTTP ' + xhr.status + ')' : '') + (status ? ': ' + status : '');
    }

    function showResult($result, state, text) {
        $result.empty().removeClass('sets-ok sets-fail sets-busy').attr('data-state', state);
        var icon = state === 'busy' ? 'fa-spinner fa-spin' : state === 'ok' ? 'fa-check-circle' : 'fa-exclamation-triangle';
        var color = state === 'ok' ? '#3a8f3a' : state === 'fail' ? '#c73a3a' : '';
        $result.addClass('sets-' + state).css('color', color);
        $('<i class="fa"></i>').addClass(icon).appendTo($result);
        $('<span class="sets-result-text"></span>').css('margin-left', '6px').text(text).appendTo($result);
    }

    function testConnection(kind, node, $button, $result, opts) {
        opts = opts || {};
        var values = dialogValues(node, opts.prefix || 'node-config-input-');
        if (typeof opts.values === 'function') $.extend(values.config, opts.values());
        $button.prop('disabled', true);
        showResult($result, 'busy', 'testing…');
        return post('sets/probe/' + encodeURIComponent(kind), { id: node.id, config: values.config, credentials: values.credentials })
            .then(
                function (answer) {
                    showResult($result, answer && answer.ok ? 'ok' : 'fail', (answer && answer.message) || 'no answer');
                },
                function (xhr, status) {
                    showResult($result, 'fail', failureText(xhr, status));
                },
            )
            .always(function () {
                $button.prop('disabled', false);
            });
    }

    function addTestButton(kind, node, opts) {
        opts = opts || {};
        var prefix = opts.prefix || 'node-config-input-';
        var $container = opts.container ? $(opts.container) : $('#' + prefix + 'name').closest('form');
        var $row = $('<div class="form-row sets-test-connection"></div>');
        $('<label>&nbsp;</label>').appendTo($row);
        var $button = $('<button type="button" class="red-ui-button sets-test-button"></button>').appendTo($row);
        $('<i class="fa fa-plug"></i>').appendTo($button);
        $('<span></span>').css('margin-left', '6px').text('Test connection').appendTo($button);
        var $result = $('<div class="sets-test-result"></div>')
            .css({ 'margin-left': '104px', 'margin-top': '6px', 'white-space': 'normal', 'word-break': 'break-word' })
            .appendTo($row);
        $row.appendTo($container);
        $button.on('click', function (e) {
            e.preventDefault();
            testConnection(kind, node, $button, $result, opts);
        });
        return { row: $row, button: $button, result: $result };
    }

    function listLabel(c) {
        var access = [c.can_read ? 'read' : null, c.can_write ? 'write' : null].filter(Boolean).join(' + ') || 'no access';
        return (c.title || c.id) + ' — ' + c.id + ' (' + access + ')';
    }

    function collectionInput(node, opts) {
        opts = opts || {};
        var $input = $('#node-input-collection');
        var $type = $('#node-input-collectionType');
        if (!$type.val()) $type.val(node.collectionType || 'str');
        $input.css('width', opts.pick === false ? '70%' : 'calc(70% - 42px)');
        $input.typedInput({ default: 'str', typeField: $type, types: ['str', 'msg', 'flow', 'env'] });
        var $row = $input.closest('.form-row');
        if (opts.pick === false) return { pick: $(), list: $() };
        var $pick = $('<button type="button" class="red-ui-button sets-collection-pick"></button>')
            .attr('title', 'list the collections of the selected TAXII server')
            .css('margin-left', '4px');
        $('<i class="fa fa-list-ul"></i>').appendTo($pick);
        $row.append($pick);
        var $list = $('<div class="sets-collection-list"></div>')
            .css({ 'margin-left': '104px', 'margin-top': '6px', 'max-height': '180px', 'overflow-y': 'auto' })
            .hide();
        $row.append($list);

        function serverId() {
            return typeof opts.server === 'function' ? opts.server() : $('#node-input-server').val();
        }

        $pick.on('click', function (e) {
            e.preventDefault();
            var id = serverId();
            var server = id && id !== '_ADD_' ? RED.nodes.node(id) : null;
            $list.show();
            if (!server) {
                showResult($list, 'fail', 'select a TAXII server first');
                return;
            }
            var values = savedValues(server);
            $pick.prop('disabled', true);
            showResult($list, 'busy', 'asking the TAXII server…');
            post('sets/collections', { id: id, config: values.config, credentials: values.credentials })
                .then(
                    function (answer) {
                        if (!answer || !answer.ok) {
                            showResult($list, 'fail', (answer && answer.message) || 'no answer');
                            return;
                        }
                        if (!answer.collections.length) {
                            showResult($list, 'fail', answer.message);
                            return;
                        }
                        $list.empty().css('color', '').attr('data-state', 'ok');
                        answer.collections.forEach(function (c) {
                            var $a = $('<a href="#" class="sets-collection-choice"></a>')
                                .attr('data-id', c.id)
                                .css({ display: 'block', padding: '2px 0' })
                                .text(listLabel(c));
                            if (opts.needs === 'write' && !c.can_write) $a.css('opacity', 0.5);
                            if (opts.needs === 'read' && !c.can_read) $a.css('opacity', 0.5);
                            $a.on('click', function (ev) {
                                ev.preventDefault();
                                $input.typedInput('type', 'str');
                                $input.typedInput('value', c.id);
                                $list.hide().empty();
                            });
                            $list.append($a);
                        });
                    },
                    function (xhr, status) {
                        showResult($list, 'fail', failureText(xhr, status));
                    },
                )
                .always(function () {
                    $pick.prop('disabled', false);
                });
        });
        return { pick: $pick, list: $list };
    }

    function collectionLabel(node) {
        if (!node.collection) return '';
        var t = node.collectionType || 'str';
        return t === 'str' ? node.collection : t + '.' + node.collection;
    }

    window.SETS_EDITOR = {
        collectionLabel: collectionLabel,
        addTestButton: addTestButton,
        testConnection: testConnection,
        collectionInput: collectionInput,
        dialogValues: dialogValues,
    };
})();
